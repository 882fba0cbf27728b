package archtest

import (
	"encoding/json"
	"os/exec"
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

// allowed lists, for each package, the project packages it may import.
var allowed = map[string][]string{
	"internal/canon":         {},
	"internal/pytime":        {},
	"internal/conformance":   {},
	"merkle":                 {"internal/canon"},
	"log":                    {"internal/canon"},
	"reducer":                {"internal/canon"},
	"internal/scan":          {"internal/canon", "log"},
	"internal/store":         {"bundles", "internal/canon", "internal/pytime", "internal/scan", "log", "merkle", "reducer"},
	"internal/check":         {"internal/scan", "internal/store", "log", "merkle", "reducer"},
	"internal/gen":           {"internal/canon", "internal/pytime", "internal/store", "log"},
	"internal/agent":         {"bundles", "fusefs", "internal/canon", "internal/pytime", "internal/store", "log", "reducer", "watcher"},
	"internal/cli":           {"bundles", "internal/agent", "internal/canon", "internal/check", "internal/pytime", "internal/scan", "internal/store", "log", "reducer"},
	"bundles":                {"internal/canon", "log"},
	"cmd/backpack":           {"internal/cli"},
	"internal/archtest":      {},
	"lora":                   {},
	"lora/internal/rnodesim": {"lora"},
	"watcher":                {},
	"fusefs":                 {"internal/canon", "internal/scan", "log", "reducer"},
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

func TestPackageDocs(t *testing.T) {
	for _, p := range list(t) {
		if p.Name != "main" && len(strings.TrimSpace(p.Doc)) < 20 {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
