package main

import (
	"sync/atomic"
	"time"
)

// hist is a latency histogram safe for concurrent use: 50 µs buckets up to
// 100 ms, then 1 ms buckets up to 10 s (later arrivals count as 10 s).
type hist struct {
	buckets [2000 + 9900 + 1]atomic.Int64
	n       atomic.Int64
}

func bucketOf(d time.Duration) int {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us < 100_000:
		return int(us / 50)
	}
	return min(2000+int((us-100_000)/1000), 2000+9900)
}

func valueOf(b int) time.Duration {
	if b < 2000 {
		return time.Duration(b*50+25) * time.Microsecond
	}
	return 100*time.Millisecond + time.Duration(b-2000)*time.Millisecond + 500*time.Microsecond
}

func (h *hist) add(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	h.n.Add(1)
}

func (h *hist) count() int64 { return h.n.Load() }

// pct is the p-th percentile (0 < p <= 100), 0 when empty.
func (h *hist) pct(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(float64(n)*p/100 + 0.5)
	rank = max(rank, 1)
	var seen int64
	for b := range h.buckets {
		seen += h.buckets[b].Load()
		if seen >= rank {
			return valueOf(b)
		}
	}
	return valueOf(len(h.buckets) - 1)
}
