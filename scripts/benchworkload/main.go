// Command benchworkload drives the two realtime workloads of issue 17
// against a server on 127.0.0.1 (scripts/bench-workload runs it, pinned to
// the other core than the server):
//
//	benchworkload -workload supabase -vus 5000 -duration 60s
//	benchworkload -workload watch-party -viewers 2000 -room-size 20 -duration 60s
//
// supabase is the workload of Supabase's published Realtime benchmark: each
// virtual user holds one socket, joins an echo channel of its own (self:
// true) and a broadcast channel shared by 6 users (self: true, as
// Centrifugo's channels deliver to the publisher too), and sends 2
// messages a second to each. watch-party is R rooms of M members as the
// platform's client uses them (docs/REALTIME_CLIENT_GUIDE.md). Latencies
// run from the send time carried in each message to its arrival. The last
// line is the one issue 17 names; a "client-bound" line says when this
// process, not the server, was the limit (its core busy, or sends late).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

const devAnonKey = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"

type options struct {
	addr      string   // the first server
	addrs     []string // every server: clients are spread over them
	workload  string
	vus       int
	viewers   int
	roomSize  int
	duration  time.Duration
	warmup    time.Duration
	serverPID []int
	pgPID     int
	dbURL     string
	protocol  string // supabase: "phoenix" (animesync) or "centrifugo"
	token     string // centrifugo: a connection JWT
}

func main() {
	var o options
	addrs := flag.String("addr", "127.0.0.1:27410", "server host:port, or several separated by commas (127.0.0.1 only)")
	flag.StringVar(&o.workload, "workload", "supabase", "supabase or watch-party")
	flag.IntVar(&o.vus, "vus", 1000, "supabase: virtual users")
	flag.IntVar(&o.viewers, "viewers", 1000, "watch-party: concurrent viewers")
	flag.IntVar(&o.roomSize, "room-size", 20, "watch-party: members per room")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "length of the measured steady phase")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "load before measuring")
	pids := flag.String("server-pid", "", "the servers' pids, separated by commas: CPU and RSS")
	flag.IntVar(&o.pgPID, "pg-pid", 0, "the postmaster's pid: PostgreSQL's CPU")
	flag.StringVar(&o.dbURL, "db-url", "", "the database, for commits (and rows written) per second")
	flag.StringVar(&o.protocol, "protocol", "phoenix", "supabase: phoenix (animesync) or centrifugo")
	flag.StringVar(&o.token, "token", "", "centrifugo: connection token")
	flag.Parse()
	o.addrs = strings.Split(*addrs, ",")
	o.addr = o.addrs[0]
	for _, a := range o.addrs {
		if host, _, _ := strings.Cut(a, ":"); host != "127.0.0.1" {
			fmt.Fprintln(os.Stderr, "benchworkload: only 127.0.0.1 may be loaded")
			os.Exit(2)
		}
	}
	for _, p := range strings.Split(*pids, ",") {
		if n, err := strconv.Atoi(p); err == nil {
			o.serverPID = append(o.serverPID, n)
		}
	}
	ctx := context.Background()
	var err error
	switch o.workload {
	case "supabase":
		err = supabaseWorkload(ctx, o)
	case "watch-party":
		err = watchParty(ctx, o)
	default:
		err = fmt.Errorf("unknown workload %q", o.workload)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchworkload:", err)
		os.Exit(1)
	}
}

// usage samples a process's CPU time and RSS from /proc.
type usage struct {
	cpu           time.Duration
	rss           int64 // bytes
	reads, writes int64 // read and write system calls (/proc/<pid>/io)
}

func sample(pid int) usage {
	if pid == 0 {
		return usage{}
	}
	var u usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command's closing parenthesis; utime and stime
		// are the 12th and 13th of those, in clock ticks (100 a second).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				u.cpu = time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "syscr: "); ok {
				u.reads, _ = strconv.ParseInt(v, 10, 64)
			} else if v, ok := strings.CutPrefix(line, "syscw: "); ok {
				u.writes, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				u.rss = kb * 1024
			}
		}
	}
	return u
}

// treeCPU is the CPU time of pid and its children (PostgreSQL's backends).
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	total := sample(pid).cpu
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return total
	}
	for _, c := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(c); err == nil {
			total += sample(n).cpu
		}
	}
	return total
}

// sampleAll adds up the usage of several processes.
func sampleAll(pids []int) usage {
	var u usage
	for _, p := range pids {
		s := sample(p)
		u.cpu += s.cpu
		u.rss += s.rss
		u.reads += s.reads
		u.writes += s.writes
	}
	return u
}

// meter measures a steady phase: the servers' and this process's CPU share.
type meter struct {
	start        time.Time
	server, self usage
	pgCPU        time.Duration
	serverPIDs   []int
	pgPID        int
	profile      *os.File // open while this process is being profiled
}

// cpuProfile is where the meter saves this process's CPU profile of the
// measured phase: is the load generator what limits a run?
var cpuProfile = flag.String("cpuprofile", "", "save this load generator's CPU profile of the measured phase here")

func startMeter(serverPIDs []int, pgPID int) *meter {
	m := &meter{start: time.Now(), server: sampleAll(serverPIDs), self: sample(os.Getpid()),
		pgCPU: treeCPU(pgPID), serverPIDs: serverPIDs, pgPID: pgPID}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchworkload: no CPU profile:", err)
		} else {
			m.profile = f
		}
	}
	return m
}

type meterResult struct {
	elapsed                   time.Duration
	serverCPU, selfCPU, pgCPU float64 // share of one core
	serverRSS                 int64
	// serverReads and serverWrites are the servers' read and write
	// system calls per second: how well socket I/O is batched.
	serverReads, serverWrites float64
}

func (m *meter) stop() meterResult {
	if m.profile != nil {
		pprof.StopCPUProfile()
		_ = m.profile.Close()
	}
	el := time.Since(m.start)
	s, me := sampleAll(m.serverPIDs), sample(os.Getpid())
	r := meterResult{elapsed: el, serverRSS: s.rss,
		serverCPU:    float64(s.cpu-m.server.cpu) / float64(el),
		selfCPU:      float64(me.cpu-m.self.cpu) / float64(el),
		serverReads:  float64(s.reads-m.server.reads) / el.Seconds(),
		serverWrites: float64(s.writes-m.server.writes) / el.Seconds()}
	if m.pgPID != 0 {
		r.pgCPU = float64(treeCPU(m.pgPID)-m.pgCPU) / float64(el)
	}
	return r
}

// clientBound says whether this process limited the run: its core was
// nearly full, or sends left more than 20 ms after they were due.
func clientBound(r meterResult, lateP99 time.Duration) string {
	var why []string
	if r.selfCPU >= 0.9 {
		why = append(why, fmt.Sprintf("client CPU %.0f%%", r.selfCPU*100))
	}
	if lateP99 > 20*time.Millisecond {
		why = append(why, fmt.Sprintf("sends late by p99 %.1f ms", ms(lateP99)))
	}
	if len(why) == 0 {
		return ""
	}
	return "client-bound: " + strings.Join(why, ", ") + " (the figures are a floor of the server's capacity)"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
