// Command benchload is scripts/bench's load generator: a fixed number of
// workers, each calling one function back to back over keep-alive HTTP for
// a fixed duration, reporting requests/s and latency percentiles.
//
// Worker i acts in room bench<i+1 as 5 digits> as bhost<i+1> (sync-control)
// or bmem<i+1> (members-update-status), the rows scripts/bench seeds, so
// workers never wait on each other's room lock — as pgbench clients do
// with the same rooms.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:54399", "animesync base URL")
	fn := flag.String("fn", "sync-control", "sync-control or members-update-status")
	conc := flag.Int("c", 16, "concurrent workers")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up")
	flag.Parse()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: *conc}}
	url := *base + "/functions/v1/" + *fn
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	measureFrom, end := start.Add(*warm), start.Add(*warm+*dur)
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := fmt.Sprintf("bench%05d", w+1)
			var local []time.Duration
			localErrs := 0
			for {
				body := map[string]any{"room_id": room, "current_time": rand.Float64() * 1400}
				if *fn == "sync-control" {
					body["user_id"], body["action"] = fmt.Sprintf("bhost%d", w+1), "seek"
				} else {
					body["user_id"], body["is_playing"] = fmt.Sprintf("bmem%d", w+1), true
				}
				raw, _ := json.Marshal(body)
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				res, err := client.Post(url, "application/json", bytes.NewReader(raw))
				ok := err == nil && res.StatusCode == http.StatusOK
				if err == nil {
					io.Copy(io.Discard, res.Body) //nolint:errcheck
					res.Body.Close()
				}
				if t0.Before(measureFrom) {
					continue
				}
				if !ok {
					localErrs++
					if localErrs == 1 && err == nil {
						fmt.Fprintf(os.Stderr, "benchload: %s answered %d\n", *fn, res.StatusCode)
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	fmt.Printf("%.1f %.3f %.3f %d %d\n", float64(len(lat))/dur.Seconds(), pct(0.50), pct(0.99), len(lat), errs)
}
