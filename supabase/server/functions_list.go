package server

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/animesync/animesync/shared/config"
)

// WriteFunctions lists the functions a server on cfg serves (`animesync
// functions list`): name, path, verify_jwt, methods and aliases, as a
// table or, with asJSON, as {"functions": [...]}.
func WriteFunctions(w io.Writer, cfg *config.Config, asJSON bool) error {
	fns, err := Functions(cfg)
	if err != nil {
		return err
	}
	type row struct {
		Name      string   `json:"name"`
		Path      string   `json:"path"`
		Aliases   []string `json:"aliases"`
		VerifyJWT bool     `json:"verify_jwt"`
		Enabled   bool     `json:"enabled"`
		Methods   []string `json:"methods"`
	}
	var rows []row
	for _, f := range fns {
		paths := f.Paths()
		rows = append(rows, row{f.Name, paths[0], paths[1:], f.VerifyJWT, f.Enabled, f.Methods})
	}
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"functions": rows})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPATH\tVERIFY_JWT\tMETHODS\tALIASES")
	for _, r := range rows {
		if !r.Enabled {
			r.Name += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Path, strconv.FormatBool(r.VerifyJWT),
			strings.Join(r.Methods, ","), strings.Join(r.Aliases, ","))
	}
	return tw.Flush()
}
