package migrations_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/dbtest"
)

// Status on a migrated database lists every file as applied, in the table
// `supabase migration list` prints and as JSON.
func TestStatusOfAMigratedDatabase(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	sqlDB, closeDB, err := migrations.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB()
	files, err := migrations.Files()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := migrations.Status(ctx, sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Fatalf("%d entries for %d files", len(entries), len(files))
	}

	var out bytes.Buffer
	if err := migrations.WriteStatus(&out, entries, true); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Migrations []migrations.Entry `json:"migrations"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	for i, e := range list.Migrations {
		if e.Local != files[i].Text || e.Remote != e.Local {
			t.Errorf("entry %d %+v: want %s applied", i, e, files[i].Text)
		}
	}

	out.Reset()
	if err := migrations.WriteStatus(&out, entries, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != len(files)+2 || strings.Fields(lines[0])[0] != "Local" {
		t.Fatalf("table of %d lines for %d files:\n%s", len(lines), len(files), out.String())
	}
	// A timestamped version shows its time, as the Supabase CLI does.
	last := files[len(files)-1].Text
	if row := lines[len(lines)-1]; !strings.Contains(row, last+" | "+last+" | "+last[:4]+"-"+last[4:6]+"-"+last[6:8]) {
		t.Errorf("last row %q: want %s local and remote with its time", row, last)
	}
}

func TestWriteResult(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := migrations.WriteResult(&out, &migrations.PushResult{}); err != nil || out.String() != "Remote database is up to date.\n" {
		t.Errorf("nothing applied: %q, %v", out.String(), err)
	}
	files, _ := migrations.Files()
	out.Reset()
	res := &migrations.PushResult{Applied: files[:1], DryRun: true,
		Changes: []migrations.TableChange{{Table: "public.rooms", Created: true, RowsAfter: 0}}}
	if err := migrations.WriteResult(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Would apply migration " + files[0].Path(), "public.rooms", "created", "Dry run:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run report lacks %q:\n%s", want, out.String())
		}
	}
}
