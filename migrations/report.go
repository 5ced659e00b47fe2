package migrations

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteResult prints a push the way `animesync db push` reports it: the
// files, then (on an adopted database) what changed in each table and the
// adoption report.
func WriteResult(w io.Writer, res *PushResult) error {
	verb := "Applied"
	if res.DryRun {
		verb = "Would apply"
	}
	if len(res.Applied) == 0 {
		_, err := fmt.Fprintln(w, "Remote database is up to date.")
		return err
	}
	for _, f := range res.Applied {
		fmt.Fprintf(w, "%s migration %s\n", verb, f.Path())
	}
	if len(res.Report) > 0 || res.DryRun {
		fmt.Fprintln(w, "\nTables:")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TABLE\tCHANGE\tROWS BEFORE\tROWS AFTER\tCOLUMNS")
		for _, c := range res.Changes {
			change := "changed"
			switch {
			case c.Created:
				change = "created"
			case c.Dropped:
				change = "dropped"
			}
			var cols []string
			for _, a := range c.ColumnsAdded {
				cols = append(cols, "+"+a)
			}
			for _, r := range c.ColumnsRemoved {
				cols = append(cols, "-"+r)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\n", c.Table, change, c.RowsBefore, c.RowsAfter, strings.Join(cols, " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(res.Report) > 0 {
		fmt.Fprintln(w, "\nAdoption of the platform's tables (animesync.adoption_report):")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tOBJECT\tROWS\tDETAIL")
		for _, r := range res.Report {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", r.Step, r.Object, r.Rows, r.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if res.DryRun {
		_, err := fmt.Fprintln(w, "\nDry run: everything above ran in a transaction that was rolled back; nothing changed.")
		return err
	}
	_, err := fmt.Fprintf(w, "Finished animesync db push: %d migration(s) applied.\n", len(res.Applied))
	return err
}

// WriteStatus prints Status the way `animesync migration list` does: a
// table like `supabase migration list`'s or, with asJSON,
// {"migrations": [...]}.
func WriteStatus(w io.Writer, entries []Entry, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"migrations": entries})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "  Local\t|\tRemote\t|\tTime (UTC)")
	fmt.Fprintln(tw, "  -----\t|\t------\t|\t----------")
	for _, e := range entries {
		fmt.Fprintf(tw, "  %s\t|\t%s\t|\t%s\n", e.Local, e.Remote, e.Time)
	}
	return tw.Flush()
}
