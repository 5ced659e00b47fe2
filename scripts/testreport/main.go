// Command testreport is scripts/test's reader of `go test -json`: it prints
// each package's result as the package finishes, the output of every test
// that failed (and of a package that failed outside its tests: a build
// error, a panic, a timeout), and ends with the counts:
//
//	go test -json ./... 2>&1 | go run ./scripts/testreport
//	…
//	go test: 812 passed, 0 failed, 3 skipped
//
// Counts are of tests and subtests. A package that fails with no failing
// test counts as one failure. Lines that are not JSON (go vet's or the
// compiler's, on stderr) pass through.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
	// ImportPath names the package of build-output and build-fail events;
	// FailedBuild, on a package's fail, the package whose build failed.
	ImportPath  string
	FailedBuild string
}

func main() {
	var passed, failed, skipped int
	output := map[string][]string{} // by package + "\x00" + test ("" for the package)
	failedTests := map[string]int{} // by package
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		line := in.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Println(string(line))
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "build-output":
			output[e.ImportPath+"\x00"] = append(output[e.ImportPath+"\x00"], e.Output)
			continue
		case "build-fail":
			continue
		case "output":
			output[key] = append(output[key], e.Output)
			continue
		}
		if e.Test != "" {
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failedTests[e.Package]++
				fmt.Printf("--- FAIL: %s %s (%.2fs)\n", e.Package, e.Test, e.Elapsed)
				printIndented(output[key])
			}
			if e.Action == "pass" || e.Action == "skip" || e.Action == "fail" {
				delete(output, key)
			}
			continue
		}
		switch e.Action {
		case "pass":
			fmt.Printf("ok   %s (%.1fs)\n", e.Package, e.Elapsed)
		case "fail":
			fmt.Printf("FAIL %s\n", e.Package)
			if failedTests[e.Package] == 0 {
				failed++
				printIndented(output[key])
				if e.FailedBuild != "" {
					printIndented(output[e.FailedBuild+"\x00"])
				}
			}
		}
		delete(output, key)
	}
	if err := in.Err(); err != nil {
		fmt.Println("testreport:", err)
		failed++
	}
	fmt.Printf("go test: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}

func printIndented(lines []string) {
	for _, l := range lines {
		l = strings.TrimRight(l, "\n")
		if strings.TrimSpace(l) == "" {
			continue
		}
		fmt.Println("    " + l)
	}
}
