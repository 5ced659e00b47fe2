package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/animesync/animesync/shared/dbtest"
)

// --- Kubernetes ---------------------------------------------------------------

// manifests parses every YAML document under kubernetes/ into generic maps.
func manifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string]map[string]any{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var m map[string]any
			if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			kind, _ := m["kind"].(string)
			if kind == "" || m["apiVersion"] == nil {
				t.Fatalf("%s document %d has no kind/apiVersion", f, i)
			}
			if _, dup := byKind[kind]; dup {
				t.Fatalf("two %s manifests", kind)
			}
			byKind[kind] = m
		}
	}
	return byKind
}

// at walks a path of map keys and list indexes.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map before %q", path, k)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: no element %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func TestKubernetesManifests(t *testing.T) {
	k := manifests(t)
	for _, kind := range []string{"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret", "Kustomization"} {
		if k[kind] == nil {
			t.Errorf("no %s manifest", kind)
		}
	}
	d := k["Deployment"]
	if d == nil {
		t.FailNow()
	}
	podLabels := at(t, d, "spec", "template", "metadata", "labels").(map[string]any)
	if fmt.Sprint(at(t, d, "spec", "selector", "matchLabels")) != fmt.Sprint(podLabels) {
		t.Error("the Deployment's selector does not match its pod labels")
	}
	pod := at(t, d, "spec", "template", "spec")
	if at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if uid, _ := at(t, pod, "securityContext", "runAsUser").(float64); uid == 0 {
		t.Error("pod runs as uid 0 or has none")
	}
	c := at(t, pod, "containers", 0)
	if fmt.Sprint(at(t, c, "args")) != "[serve]" {
		t.Errorf("container args %v, want [serve]", at(t, c, "args"))
	}
	if at(t, c, "ports", 0, "containerPort") != float64(54321) || at(t, c, "ports", 0, "name") != "http" {
		t.Errorf("container port %v", at(t, c, "ports"))
	}
	if at(t, c, "readinessProbe", "httpGet", "path") != "/health" || at(t, c, "readinessProbe", "httpGet", "port") != "http" {
		t.Errorf("readiness probe %v, want GET /health on http", at(t, c, "readinessProbe"))
	}
	if at(t, c, "livenessProbe") == nil {
		t.Error("no liveness probe")
	}
	for _, f := range [][]any{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if at(t, c, append([]any{"resources"}, f...)...) == nil {
			t.Errorf("resources.%v unset", f)
		}
	}
	sc := at(t, c, "securityContext")
	for key, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false} {
		if at(t, sc, key) != want {
			t.Errorf("container securityContext.%s = %v, want %v", key, at(t, sc, key), want)
		}
	}
	if fmt.Sprint(at(t, sc, "capabilities", "drop")) != "[ALL]" {
		t.Error("capabilities are not all dropped")
	}
	grace, _ := at(t, pod, "terminationGracePeriodSeconds").(float64)
	if grace < 15+5 {
		t.Errorf("terminationGracePeriodSeconds %v is below SHUTDOWN_TIMEOUT (15s) plus preStop", grace)
	}

	if s := k["Service"]; s != nil {
		if fmt.Sprint(at(t, s, "spec", "selector")) != fmt.Sprint(podLabels) {
			t.Error("the Service does not select the Deployment's pods")
		}
		if at(t, s, "spec", "ports", 0, "port") != float64(54321) || at(t, s, "spec", "ports", 0, "targetPort") != "http" {
			t.Errorf("service ports %v", at(t, s, "spec", "ports"))
		}
	}
	if h := k["HorizontalPodAutoscaler"]; h != nil {
		if at(t, h, "apiVersion") != "autoscaling/v2" || at(t, h, "spec", "scaleTargetRef", "kind") != "Deployment" ||
			at(t, h, "spec", "scaleTargetRef", "name") != at(t, d, "metadata", "name") {
			t.Error("the HPA does not target the Deployment")
		}
		if lo, _ := at(t, h, "spec", "minReplicas").(float64); lo < 2 {
			t.Error("minReplicas below 2 leaves no replica during a rollout or node drain")
		}
	}
	if p := k["PodDisruptionBudget"]; p != nil {
		if fmt.Sprint(at(t, p, "spec", "selector", "matchLabels")) != fmt.Sprint(podLabels) {
			t.Error("the PDB does not select the Deployment's pods")
		}
	}
	// The ConfigMap and Secret are loaded with envFrom: every key must be a
	// variable animesync reads, or it is a silent typo.
	known := configVariables(t)
	for _, kind := range []string{"ConfigMap", "Secret"} {
		if k[kind] == nil {
			continue
		}
		data, _ := k[kind]["data"].(map[string]any)
		if data == nil {
			data, _ = k[kind]["stringData"].(map[string]any)
		}
		for key := range data {
			if !slices.Contains(known, key) {
				t.Errorf("%s key %s is not a variable animesync reads", kind, key)
			}
		}
	}
	if ks := k["Kustomization"]; ks != nil {
		res := fmt.Sprint(at(t, ks, "resources"))
		for _, f := range []string{"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "configmap.yaml"} {
			if !strings.Contains(res, f) {
				t.Errorf("kustomization leaves out %s", f)
			}
		}
		if strings.Contains(res, "secret.example.yaml") {
			t.Error("kustomization applies the example Secret")
		}
	}
}

// --- compose ------------------------------------------------------------------

func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	db := at(t, c, "services", "db")
	if at(t, db, "image") != "postgres:15" {
		t.Errorf("db image %v, want postgres:15", at(t, db, "image"))
	}
	if cmd, _ := at(t, db, "command").(string); !strings.Contains(cmd, "wal_level=logical") {
		t.Errorf("db command %q does not set wal_level=logical", cmd)
	}
	if at(t, db, "healthcheck", "test") == nil {
		t.Error("db has no healthcheck")
	}
	app := at(t, c, "services", "animesync")
	if at(t, app, "build", "dockerfile") != "deploy/Dockerfile" || at(t, app, "build", "context") != ".." {
		t.Errorf("animesync build %v", at(t, app, "build"))
	}
	if at(t, app, "depends_on", "db", "condition") != "service_healthy" {
		t.Error("animesync does not wait for a healthy database")
	}
	if fmt.Sprint(at(t, app, "healthcheck", "test")) != "[CMD /animesync healthcheck]" {
		t.Errorf("animesync healthcheck %v", at(t, app, "healthcheck", "test"))
	}
	if fmt.Sprint(at(t, app, "ports")) != "[54321:54321]" {
		t.Errorf("ports %v", at(t, app, "ports"))
	}
	env := at(t, app, "environment").(map[string]any)
	if u, _ := env["SUPABASE_DB_URL"].(string); !strings.Contains(u, "@db:5432/") {
		t.Errorf("SUPABASE_DB_URL %q does not point at the db service", u)
	}
	known := configVariables(t)
	for key := range env {
		if !slices.Contains(known, key) {
			t.Errorf("environment %s is not a variable animesync reads", key)
		}
	}
}

// --- Dockerfile -----------------------------------------------------------------

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, expose, entry, health string
	var static bool
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(raw, []byte("\\\n"), nil)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
		case "USER":
			user = rest
		case "EXPOSE":
			expose = rest
		case "ENTRYPOINT":
			entry = rest
		case "HEALTHCHECK":
			health = rest
		case "RUN":
			static = static || strings.Contains(rest, "CGO_ENABLED=0 go build")
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") || !strings.HasPrefix(froms[1], "gcr.io/distroless/static") {
		t.Errorf("stages %q, want golang:1.26 then distroless/static", froms)
	}
	if !static {
		t.Error("the build does not set CGO_ENABLED=0")
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("USER %q is root", user)
	}
	if expose != "54321" || entry != `["/animesync"]` {
		t.Errorf("EXPOSE %q ENTRYPOINT %q", expose, entry)
	}
	if !strings.HasSuffix(health, `CMD ["/animesync", "healthcheck"]`) {
		t.Errorf("HEALTHCHECK %q", health)
	}
}

// --- environment ------------------------------------------------------------------

// configVariables are the environment variables shared/config reads.
func configVariables(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("../shared/config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|HOST|PORT)"`).FindAllStringSubmatch(string(src), -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	if len(out) < 30 {
		t.Fatalf("found only %d variables in config.go: %v", len(out), out)
	}
	return out
}

func TestEnvExampleAndReadmeListEveryVariable(t *testing.T) {
	example, err := os.ReadFile("animesync.env.example")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range configVariables(t) {
		if !regexp.MustCompile(`(?m)^(# )?` + v + `=`).Match(example) {
			t.Errorf("add %s to deploy/animesync.env.example (set or as a commented default)", v)
		}
		if !bytes.Contains(readme, []byte("`"+v+"`")) {
			t.Errorf("add %s to README.md's configuration table", v)
		}
	}
	// No real secret may be committed: required secrets are blank.
	env := envFile(t, "animesync.env.example")
	if env["SUPABASE_JWT_SECRET"] != "" {
		t.Error("the example carries a JWT secret")
	}
}

// envFile reads a file the way systemd's EnvironmentFile= does: KEY=VALUE
// lines, # and ; comments, optional surrounding quotes.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for n, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(strings.TrimSpace(k)) {
			t.Fatalf("%s:%d: not KEY=VALUE: %q", path, n+1, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env
}

// --- systemd ------------------------------------------------------------------------

// unit parses an INI-style systemd unit: section → key → values (keys repeat).
func unit(t *testing.T) map[string]map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("systemd/animesync.service")
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]map[string][]string{}
	section := ""
	for n, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("animesync.service:%d: %q", n+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func one(t *testing.T, u map[string]map[string][]string, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s = %q, want one value", section, key, v)
	}
	return v[0]
}

func TestSystemdUnit(t *testing.T) {
	u := unit(t)
	exec := strings.Fields(one(t, u, "Service", "ExecStart"))
	if len(exec) != 2 || filepath.Base(exec[0]) != "animesync" || exec[1] != "serve" {
		t.Errorf("ExecStart %q, want …/animesync serve", exec)
	}
	for key, want := range map[string]string{
		"Restart": "on-failure", "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "KillSignal": "SIGTERM", "CapabilityBoundingSet": "",
	} {
		if got := one(t, u, "Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if one(t, u, "Service", "EnvironmentFile") != "/etc/animesync/animesync.env" {
		t.Error("EnvironmentFile moved: update docs/DEPLOYMENT.md too")
	}
	stop, err := time.ParseDuration(one(t, u, "Service", "TimeoutStopSec"))
	if err != nil || stop <= 15*time.Second {
		t.Errorf("TimeoutStopSec %v must exceed SHUTDOWN_TIMEOUT (15s)", stop)
	}
	if one(t, u, "Install", "WantedBy") != "multi-user.target" {
		t.Error("not enabled for multi-user.target")
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker when the machine has it
// (scripts/test on Debian does): unknown keys and bad values are errors here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	envPath := filepath.Join(dir, "animesync.env")
	if err := os.WriteFile(envPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("systemd/animesync.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart exists: point it at the binary just built.
	s := strings.ReplaceAll(string(raw), "/usr/local/bin/animesync", bin)
	s = strings.ReplaceAll(s, "/etc/animesync/animesync.env", envPath)
	unitPath := filepath.Join(dir, "animesync.service")
	if err := os.WriteFile(unitPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unitPath).CombinedOutput()
	// verify exits 0 on unknown keys and only prints them, so any output fails.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// --- the binary, started as the unit starts it -----------------------------------------------

var built struct {
	path string
	err  error
}

// buildBinary builds animesync the way the Dockerfile does (static, cgo
// off), once per test binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	if built.path == "" && built.err == nil {
		dir, err := os.MkdirTemp("", "animesync-deploy-test")
		if err != nil {
			t.Fatal(err)
		}
		built.path = filepath.Join(dir, "animesync")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", built.path, "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(buildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("the binary is dynamically linked (%v): distroless/static cannot run it", p.Type)
		}
	}
}

// TestBinaryRunsAsTheUnitDescribes starts the binary with the unit's
// ExecStart arguments and only the variables of its EnvironmentFile (the
// example, with the blanks an operator fills in), as systemd would, then
// checks /health, the container health check, and that SIGTERM (the unit's
// KillSignal) ends it gracefully with status 0 within TimeoutStopSec.
func TestBinaryRunsAsTheUnitDescribes(t *testing.T) {
	d := dbtest.New(t)
	bin := buildBinary(t)
	u := unit(t)
	args := strings.Fields(one(t, u, "Service", "ExecStart"))[1:]
	stopTimeout, err := time.ParseDuration(one(t, u, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatal(err)
	}

	env := envFile(t, "animesync.env.example")
	env["SUPABASE_DB_URL"] = d.URL
	env["SUPABASE_JWT_SECRET"] = "deploy-test-secret-" + strings.Repeat("x", 32)
	env["HOST"] = "127.0.0.1"
	env["PORT"] = freePort(t)
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = environ // systemd starts services with a clean environment
	cmd.Dir = t.TempDir()
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})

	base := "http://127.0.0.1:" + env["PORT"]
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(base + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("animesync exited before becoming healthy: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health never answered 200\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := exec.CommandContext(ctx, bin, "healthcheck")
	hc.Env = []string{"PORT=" + env["PORT"]}
	if out, err := hc.CombinedOutput(); err != nil || !strings.Contains(string(out), `"database":"ok"`) {
		t.Errorf("animesync healthcheck: %v %s", err, out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(stopTimeout):
		t.Fatalf("still running %s after SIGTERM (TimeoutStopSec)", stopTimeout)
	}
	if !strings.Contains(stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("no graceful shutdown in the log:\n%s", stderr.String())
	}

	// And the health check fails once nothing answers.
	hc = exec.Command(bin, "healthcheck", "--timeout", "2s")
	hc.Env = []string{"PORT=" + env["PORT"]}
	if err := hc.Run(); err == nil {
		t.Error("healthcheck succeeded with the server stopped")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
