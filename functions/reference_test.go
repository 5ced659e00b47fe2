package functions

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReferenceDocumentsEveryFunction keeps docs/API_REFERENCE.md complete
// as functions change: a section per function naming its methods and every
// request field, with at least one curl and one supabase-js example (which
// scripts/doc-examples runs), and every error code somewhere on the page.
func TestReferenceDocumentsEveryFunction(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docs/API_REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	sections := referenceSections(doc)

	for _, f := range Registry(&Deps{}) {
		sec, ok := sections[f.Name]
		if !ok {
			t.Errorf("docs/API_REFERENCE.md has no \"### %s\" section", f.Name)
			continue
		}
		for _, lang := range []string{"sh", "js"} {
			if !regexp.MustCompile("(?m)^ *```" + lang + ` example=`).MatchString(sec) {
				t.Errorf("### %s has no ```%s example=… block", f.Name, lang)
			}
		}
		for _, m := range f.Methods {
			if !strings.Contains(sec, "`"+m+"`") {
				t.Errorf("### %s does not name its method `%s`", f.Name, m)
			}
		}
		if f.Request == nil {
			t.Errorf("registry: %s has no Request type", f.Name)
			continue
		}
		typ := reflect.TypeOf(f.Request)
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(sec, "`"+name+"`") {
				t.Errorf("### %s does not document its request field `%s`", f.Name, name)
			}
		}
	}

	for _, src := range []struct {
		file string
		min  int
	}{{"../shared/api/error.go", 17}, {"../shared/auth/verifier.go", 5}} {
		codes := codeConstants(t, src.file)
		if len(codes) < src.min {
			t.Fatalf("%s: found %d error codes, want at least %d: %v", src.file, len(codes), src.min, codes)
		}
		for _, c := range codes {
			if !strings.Contains(doc, "`"+c+"`") {
				t.Errorf("docs/API_REFERENCE.md does not document the error code `%s` (%s)", c, src.file)
			}
		}
	}
}

// referenceSections maps each "### name" heading to its text, up to the
// next heading of level 2 or 3.
func referenceSections(doc string) map[string]string {
	out := map[string]string{}
	name := ""
	var b strings.Builder
	flush := func() {
		if name != "" {
			out[name] = b.String()
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(doc, "\n") {
		if strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "### ") {
			flush()
			name = ""
			if h, ok := strings.CutPrefix(line, "### "); ok {
				name = strings.Fields(h)[0]
			}
		}
		b.WriteString(line)
	}
	flush()
	return out
}

// codeConstants reads the string values of the constants named Code… in a
// Go file: the error codes clients switch on.
func codeConstants(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %s: %v", file, n.Name, err)
				}
				out = append(out, v)
			}
		}
	}
	return out
}
