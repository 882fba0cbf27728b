package archtest

import (
	"encoding/json"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/backpack-field/backpack/"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func list(t *testing.T) []pkg {
	t.Helper()
	watchSources(t)
	out, err := exec.Command("go", "list", "-json", "../../...").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// watchSources reads every directory of the module. The tests learn the
// imports from `go list`, a separate process whose reads go test does not
// see; reading the directories here makes go test's cache depend on
// them, so that a changed or added source file runs the tests again
// instead of reusing a cached pass.
func watchSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "../.." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// allowed lists, for each package, the project packages it may import.
var allowed = map[string][]string{
	"internal/canon":       {},
	"internal/pytime":      {},
	"internal/conformance": {},
	"merkle":               {"internal/canon"},
	"log":                  {"internal/canon"},
	"reducer":              {"internal/canon"},
	"internal/scan":        {"internal/canon", "log"},
	"internal/store":       {"bundles", "internal/canon", "internal/pytime", "internal/scan", "log", "merkle", "reducer"},
	"internal/check":       {"internal/scan", "internal/store", "log", "merkle", "reducer"},
	"internal/gen":         {"internal/canon", "internal/pytime", "internal/store", "log"},
	"internal/agent":       {"bundles", "fusefs", "internal/canon", "internal/pytime", "internal/status", "internal/store", "log", "lora", "lora/radiosync", "merkle", "reducer", "tui", "watcher"},
	"internal/cli":         {"bundles", "internal/agent", "internal/canon", "internal/check", "internal/pytime", "internal/scan", "internal/status", "internal/store", "log", "lora", "lora/radiosim", "reducer"},
	"bundles":              {"internal/canon", "log"},
	"cmd/backpack":         {"internal/cli"},
	"internal/archtest":    {},
	"lora":                 {},
	"lora/rnodesim":        {"lora"},
	"lora/radiosync":       {"internal/canon", "internal/store", "log", "lora"},
	"lora/radiosim":        {"internal/canon", "internal/store", "log", "lora", "lora/radiosync"},
	"watcher":              {},
	"tui":                  {"internal/status", "log"},
	"internal/status":      {},
	"fusefs":               {"internal/canon", "internal/scan", "log", "reducer"},
}

func TestImportDirection(t *testing.T) {
	for _, p := range list(t) {
		name := strings.TrimPrefix(p.ImportPath, mod)
		ok, known := allowed[name]
		if !known {
			t.Errorf("package %s is not in the import table; add it with the imports it may use", name)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			found := false
			for _, a := range ok {
				found = found || a == dep
			}
			if !found {
				t.Errorf("%s imports %s, which the layout does not allow", name, dep)
			}
		}
	}
}

// views render snapshots and send intents (STYLE.md section 1): they may
// use read-only value types and declare the interfaces they consume, but
// never reach internal/store, not even through another package; the
// agent hands them what they need.
var views = []string{"tui", "fusefs"}

// viewsNotYet lists the views that still reach internal/store, with
// why. The test fails when one of them stops reaching it, so that the
// exception is removed then.
var viewsNotYet = map[string]string{}

func TestViewsNeverReachStore(t *testing.T) {
	const store = "internal/store"
	for _, v := range views {
		path := importPath(t, v, store)
		why, pending := viewsNotYet[v]
		switch {
		case path != "" && !pending:
			t.Errorf("%s reaches %s (%s); views get data through an interface they declare, which internal/agent implements", v, store, path)
		case path != "" && pending:
			t.Logf("known exception: %s reaches %s (%s): %s", v, store, path, why)
		case path == "" && pending:
			t.Errorf("%s no longer reaches %s: remove it from viewsNotYet", v, store)
		}
	}
}

// importPath returns a chain of imports from the project package from to
// the project package to ("tui -> internal/agent -> internal/store"), or
// "" when from does not depend on to. Test files are not followed.
func importPath(t *testing.T, from, to string) string {
	t.Helper()
	watchSources(t)
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../"+from).Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], mod) {
			continue
		}
		name := strings.TrimPrefix(f[0], mod)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, mod) {
				imports[name] = append(imports[name], strings.TrimPrefix(imp, mod))
			}
		}
	}
	// Breadth first, so that the chain shown is a shortest one.
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			chain := []string{p}
			for q := prev[p]; q != ""; q = prev[q] {
				chain = append([]string{q}, chain...)
			}
			return strings.Join(chain, " -> ")
		}
		for _, imp := range imports[p] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return ""
}

func TestPackageDocs(t *testing.T) {
	for _, p := range list(t) {
		if p.Name != "main" && len(strings.TrimSpace(p.Doc)) < 20 {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
