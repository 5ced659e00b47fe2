// Command animesync is the watch-party platform's backend in one binary: the
// Edge Functions, their gateway, realtime and migrations, with verbs in the
// spirit of the Supabase CLI.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/version"
	"github.com/animesync/animesync/supabase/server"
)

const usage = `animesync — the watch-party platform's backend in one binary

Usage:
  animesync serve [--no-migrate]          serve functions, realtime and /health (PORT, default 54321)
  animesync functions serve [--no-migrate]  the same, named as in the Supabase CLI
  animesync functions list [-o json]      the functions: name, path, verify_jwt, methods
  animesync db push [--db-url URL] [--dry-run]
                                          apply pending migrations
  animesync migration list [--db-url URL] [-o json]
                                          local and applied migrations, like supabase migration list
  animesync status                        URLs and keys clients need, like supabase status
  animesync healthcheck [--url URL]       exit 0 when /health answers 200 (container health checks)
  animesync version                       print the version

Configuration comes from the environment; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(os.Stderr, usage)
			fmt.Fprintln(os.Stderr, "animesync:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "animesync:", err)
		os.Exit(1)
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError("no command given")
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	switch cmd {
	case "serve", "functions serve":
		return serve(ctx, rest)
	case "functions list":
		return functionsList(rest, out)
	case "db push":
		return dbPush(ctx, rest, out)
	case "migration list":
		return migrationList(ctx, rest, out)
	case "status":
		return status(ctx, rest, out)
	case "healthcheck":
		return healthcheck(ctx, rest, out)
	case "version", "--version", "-v":
		if err := parseFlags(flag.NewFlagSet("version", flag.ContinueOnError), rest); err != nil {
			return err
		}
		fmt.Fprintln(out, "animesync", version.Version)
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(out, usage)
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", cmd))
}

// parseFlags parses a verb's flags; unknown flags, stray arguments and
// values outside a flag's choices are usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // the usage error says what is wrong
	if err := fs.Parse(args); err != nil {
		return usageError(fs.Name() + ": " + err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)))
	}
	return nil
}

// outputFormat is the -o flag of the listing verbs: table or json.
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }

func (o *outputFormat) Set(v string) error {
	if v != "table" && v != "json" {
		return fmt.Errorf("output format %q: want table or json", v)
	}
	*o = outputFormat(v)
	return nil
}

func formatFlag(fs *flag.FlagSet) *outputFormat {
	o := outputFormat("table")
	fs.Var(&o, "o", "output format: table or json")
	return &o
}

func loadConfig() (*config.Config, *slog.Logger, error) {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	return cfg, log, nil
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	noMigrate := fs.Bool("no-migrate", false, "do not apply pending migrations at start")
	pprofAddr := fs.String("pprof-addr", "", "serve Go's /debug/pprof on this loopback address (for profiling, e.g. 127.0.0.1:6060)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pprofAddr != "" && !server.LoopbackAddr(*pprofAddr) {
		return usageError("-pprof-addr must be a loopback address with a port, such as 127.0.0.1:6060")
	}
	cfg, log, err := loadConfig()
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		if err := server.ServePprof(*pprofAddr, log); err != nil {
			return err
		}
	}
	server.LogConfigWarnings(cfg, log)
	srv, err := server.New(ctx, cfg, log, server.Options{Migrate: !*noMigrate})
	if err != nil {
		return err
	}
	return srv.Run(ctx, nil)
}

func functionsList(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("functions list", flag.ContinueOnError)
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return server.WriteFunctions(out, cfg, *format == "json")
}

// migrationDB connects the migration verbs to --db-url, else the configured database.
func migrationDB(ctx context.Context, dbURL string) (*sql.DB, func(), error) {
	if dbURL == "" {
		cfg, err := config.FromEnv(os.Getenv)
		if err != nil {
			return nil, nil, fmt.Errorf("configuration: %w", err)
		}
		dbURL = cfg.DBURL
	}
	if dbURL == "" {
		return nil, nil, errors.New("no database: pass --db-url or set SUPABASE_DB_URL")
	}
	return migrations.Connect(ctx, dbURL)
}

func dbPush(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("db push", flag.ContinueOnError)
	dbURL := fs.String("db-url", "", "database URL (default: SUPABASE_DB_URL)")
	dryRun := fs.Bool("dry-run", false, "run the pending migrations in a transaction that is rolled back, and report what they would change")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sqlDB, closeDB, err := migrationDB(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeDB()
	res, err := migrations.Push(ctx, sqlDB, migrations.PushOptions{DryRun: *dryRun})
	if res != nil {
		if werr := migrations.WriteResult(out, res); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func migrationList(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("migration list", flag.ContinueOnError)
	dbURL := fs.String("db-url", "", "database URL (default: SUPABASE_DB_URL)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sqlDB, closeDB, err := migrationDB(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeDB()
	entries, err := migrations.Status(ctx, sqlDB)
	if err != nil {
		return err
	}
	return migrations.WriteStatus(out, entries, *format == "json")
}

func status(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return server.WriteStatus(ctx, out, cfg)
}

// healthcheck exists because the container image has no shell or curl for
// a HEALTHCHECK; the binary checks itself.
func healthcheck(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	port := os.Getenv("PORT")
	if port == "" {
		port = "54321"
	}
	target := fs.String("url", "http://127.0.0.1:"+port+"/health", "health URL to check")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	body, err := server.Probe(ctx, *target, *timeout)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	fmt.Fprintln(out, body)
	return nil
}
