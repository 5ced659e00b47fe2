package realtime

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/auth"
)

// recordingSink records PresenceSink calls as "track <topic> <key>" and
// "leave <topic> <key>".
type recordingSink struct {
	mu     sync.Mutex
	events []string
	metas  []map[string]any
	proofs []*auth.Claims
}

func newRecordingSink() *recordingSink { return &recordingSink{} }

func (r *recordingSink) PresenceTrack(_ context.Context, topic, key string, meta map[string]any, proof *auth.Claims) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "track "+topic+" "+key)
	r.metas = append(r.metas, meta)
	r.proofs = append(r.proofs, proof)
}

func (r *recordingSink) PresenceLeave(_ context.Context, topic, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "leave "+topic+" "+key)
}

func (r *recordingSink) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor waits until the sink saw exactly want, in order.
func (r *recordingSink) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := r.snapshot()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink saw %q, want %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
