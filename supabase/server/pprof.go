package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
)

// LoopbackAddr reports whether addr is a loopback host with a port, the
// only place ServePprof may listen.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// ServePprof serves Go's /debug/pprof on addr (`animesync serve
// --pprof-addr`) until the process ends. Profiles expose the process's
// internals, so addr must be a loopback address.
func ServePprof(addr string, log *slog.Logger) error {
	if !LoopbackAddr(addr) {
		return fmt.Errorf("pprof: %q is not a loopback address with a port", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving /debug/pprof", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}
