package failover_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every exported function of the package that returns an Option or a
// CallOption is in the README's Options table (or, for the per-call
// options, named in its Per-call options section).
func TestREADMEListsEveryOption(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## Options")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("no Options section")
	}
	options := text[start : start+1+end]
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !fn.Name.IsExported() || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
				continue
			}
			id, ok := fn.Type.Results.List[0].Type.(*ast.Ident)
			if !ok {
				continue
			}
			switch id.Name {
			case "Option":
				n++
				if !strings.Contains(options, "`"+fn.Name.Name+"(") {
					t.Errorf("%s (%s) is not in the README's Options table", fn.Name.Name, name)
				}
			case "CallOption":
				n++
				if !strings.Contains(text, "`"+fn.Name.Name+"(") {
					t.Errorf("the per-call option %s (%s) is not in the README", fn.Name.Name, name)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("found %d options: the scan is broken", n)
	}
}
