package realtime

import "time"

// Codes under which the per-client limits' refusals are counted in
// animesync_rate_limit_rejections_total (the client itself is told in
// Realtime's words).
const (
	codeTooManyEvents        = "TOO_MANY_EVENTS"
	codeTooManyChannels      = "TOO_MANY_CHANNELS"
	codeTooManyPresenceCalls = "TOO_MANY_PRESENCE_CALLS"
	codeTooMuchState         = "SOCKET_STATE_LIMIT"
	codeTrackTooLarge        = "TRACK_TOO_LARGE"
)

// rollingRate is Supabase Realtime's RateCounter: events are counted in 12
// buckets of 5 s, and the rate is the per-second average over the last 60 s.
// Averaging over a minute tolerates bursts but stops sustained flooding.
// Not safe for concurrent use; its owner serialises access.
type rollingRate struct {
	buckets [rateBuckets]int64
	start   int64 // bucket index (unix time / bucketWidth) of buckets[0]'s slot
	seen    bool
}

const (
	rateBuckets     = 12
	rateBucketWidth = 5 * time.Second
	rateWindow      = rateBuckets * rateBucketWidth
)

// add counts one event at now and returns the per-second average over the
// window, this event included.
func (r *rollingRate) add(now time.Time) float64 {
	idx := now.UnixNano() / int64(rateBucketWidth)
	r.advance(idx)
	r.buckets[idx%rateBuckets]++
	var sum int64
	for _, n := range r.buckets {
		sum += n
	}
	return float64(sum) / rateWindow.Seconds()
}

// advance clears buckets that fell out of the window since the last event.
func (r *rollingRate) advance(idx int64) {
	if !r.seen {
		r.seen, r.start = true, idx
		return
	}
	if idx-r.start >= rateBuckets {
		r.buckets = [rateBuckets]int64{}
	} else {
		for i := r.start + 1; i <= idx; i++ {
			r.buckets[i%rateBuckets] = 0
		}
	}
	if idx > r.start {
		r.start = idx
	}
}

// fixedWindow is Supabase's per-channel presence limiter: at most max calls
// per window, the window starting at the first call after the previous one
// expired. Not safe for concurrent use.
type fixedWindow struct {
	count   int
	resetAt time.Time
}

// allow counts one call and reports whether it is within the limit.
func (f *fixedWindow) allow(now time.Time, max int, window time.Duration) bool {
	if f.resetAt.IsZero() || now.After(f.resetAt) {
		f.count, f.resetAt = 1, now.Add(window)
		return true
	}
	if f.count >= max {
		return false
	}
	f.count++
	return true
}
