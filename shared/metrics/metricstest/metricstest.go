// Package metricstest reads metrics back in tests: from a registry, or
// from a /metrics response parsed as Prometheus would parse it.
package metricstest

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are metric families by name.
type Families map[string]*dto.MetricFamily

// Gather collects g's metrics.
func Gather(tb testing.TB, g prometheus.Gatherer) Families {
	tb.Helper()
	fams, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	out := Families{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// Parse reads the Prometheus text format, so that a malformed exposition
// fails the test.
func Parse(tb testing.TB, body []byte) Families {
	tb.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("parse metrics: %v\n%s", err, body)
	}
	return fams
}

// Series maps "{k=v,...}" (labels sorted, "{}" for none) to the value of
// each series of name: a counter's or gauge's value, a histogram's sample
// count.
func (f Families) Series(name string) map[string]float64 {
	out := map[string]float64{}
	fam, ok := f[name]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(labels)
		key := "{" + strings.Join(labels, ",") + "}"
		switch {
		case m.Counter != nil:
			out[key] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[key] = m.GetGauge().GetValue()
		case m.Histogram != nil:
			out[key] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// Value is one series' value, and whether it exists.
func (f Families) Value(name, labels string) (float64, bool) {
	v, ok := f.Series(name)[labels]
	return v, ok
}

// Want fails the test unless the series name{labels} is want.
func (f Families) Want(tb testing.TB, name, labels string, want float64) {
	tb.Helper()
	if v, ok := f.Value(name, labels); !ok || v != want {
		tb.Errorf("%s%s = %v (present %v), want %v; all: %v", name, labels, v, ok, want, f.Series(name))
	}
}
