package follower

import "context"

// Service is one process's part in following presence: it competes for
// the lease and follows while it holds it.
type Service struct {
	Lease    *Lease
	Follower *Follower
}

// Run competes for the lease until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.Lease.Run(ctx, s.Follower.Follow)
}

// Status is the service's state for /health.
type Status struct {
	Status string `json:"status"`
	Mode   string `json:"mode"`
	// Role is "holder" while this process follows, "standby" while another
	// does (or none is seen yet).
	Role   string `json:"role"`
	Holder string `json:"holder"`
	Stats
}

// Status reports the lease and the follower.
func (s *Service) Status() Status {
	ls := s.Lease.State()
	st := Status{Status: "ok", Mode: "upstream", Role: "standby", Holder: ls.Holder, Stats: s.Follower.Stats()}
	if ls.Held {
		st.Role = "holder"
	}
	return st
}
