package failover_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeBlock is a ```go fenced block of README.md.
type readmeBlock struct {
	line     int    // README line of the block's first code line (after the fence)
	code     string // the block as shown
	fragment string // set when a preceding <!-- fragment --> comment marks it: the reason
}

// fragmentMark is the HTML comment that marks the next ```go block as a
// fragment that does not compile on its own: <!-- fragment --> or
// <!-- fragment: why -->.
var fragmentMark = regexp.MustCompile(`^<!--\s*fragment\s*(?::\s*(.*?))?\s*-->$`)

// goBlocks returns the ```go blocks of a Markdown file, in order.
func goBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks      []readmeBlock
		cur         *readmeBlock
		inOther     bool   // inside a fenced block that is not Go
		prev        string // the last non-blank line outside blocks
		code        strings.Builder
		line, start int
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line++
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		switch {
		case cur != nil:
			if trimmed == "```" {
				cur.code = code.String()
				blocks = append(blocks, *cur)
				cur, prev = nil, ""
				continue
			}
			code.WriteString(text + "\n")
		case inOther:
			if trimmed == "```" {
				inOther, prev = false, ""
			}
		case strings.HasPrefix(trimmed, "```"):
			lang := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
			if lang != "go" && lang != "golang" {
				inOther = true
				continue
			}
			start = line + 1
			cur = &readmeBlock{line: start}
			code.Reset()
			if m := fragmentMark.FindStringSubmatch(prev); m != nil {
				cur.fragment = m[1]
				if cur.fragment == "" {
					cur.fragment = "marked <!-- fragment -->"
				}
			}
		case trimmed != "":
			prev = trimmed
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: ```go block is never closed", path, start-1)
	}
	return blocks
}

// readmeExampleModules are the example modules whose SDKs README blocks
// import.
var readmeExampleModules = []string{"examples/anthropic", "examples/gemini"}

var packageClause = regexp.MustCompile(`(?m)^package\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?://.*)?$`)

// goModRequires returns the requirements of the go.mod in dir, as `go mod
// edit -json` reads them.
func goModRequires(ctx context.Context, t *testing.T, goBin, dir string) map[string]string {
	t.Helper()
	cmd := exec.CommandContext(ctx, goBin, "mod", "edit", "-json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json in %s: %v", dir, err)
	}
	var mod struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	req := make(map[string]string)
	for _, r := range mod.Require {
		req[r.Path] = r.Version
	}
	return req
}

// TestREADME checks that every ```go block of README.md compiles as shown,
// imports included: each block is written, unchanged, as a package of its
// own in a temporary module that replaces this module and redisstore by the
// working tree and requires the versions their go.mod files (and those of
// the example modules in readmeExampleModules) require, and
// `go vet` checks them all. A block without a package clause fails unless a
// <!-- fragment --> comment right before it says it is a fragment.
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet on the README's code blocks; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	// A cold build cache compiles the example modules' SDKs for vet:
	// over two minutes for Anthropic's on two cores.
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(t, filepath.Join(root, "README.md"))
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block")
	}

	// The temporary module: this module and redisstore from the working
	// tree, every other module at the version their go.mod files require
	// (which the module cache already holds after their own builds), and
	// their go.sum lines.
	subs := []struct{ path, dir string }{
		{"github.com/llmfailover/failover", root},
		{"github.com/llmfailover/failover/redisstore", filepath.Join(root, "redisstore")},
		{"github.com/llmfailover/failover/otelfailover", filepath.Join(root, "otelfailover")},
	}
	local := map[string]bool{}
	for _, s := range subs {
		local[s.path] = true
	}
	req := map[string]string{}
	var sum strings.Builder
	for _, s := range subs {
		for p, v := range goModRequires(ctx, t, goBin, s.dir) {
			// A floor only: the replaced modules' own requirements are in
			// the module graph too, and MVS picks the highest.
			if _, seen := req[p]; !seen && !local[p] {
				req[p] = v
			}
		}
		if b, err := os.ReadFile(filepath.Join(s.dir, "go.sum")); err == nil {
			sum.Write(b)
		}
	}
	// The SDKs of the example modules that the README shows (Anthropic's,
	// Google's): their go.mod files pin the versions and their go.sum the
	// hashes; the example modules themselves are not part of it.
	for _, dir := range readmeExampleModules {
		d := filepath.Join(root, dir)
		for p, v := range goModRequires(ctx, t, goBin, d) {
			if _, seen := req[p]; !seen && !local[p] {
				req[p] = v
			}
		}
		if b, err := os.ReadFile(filepath.Join(d, "go.sum")); err == nil {
			sum.Write(b)
		}
	}
	var mod strings.Builder
	mod.WriteString("module readmecheck\n\ngo 1.25.0\n\nrequire (\n")
	for _, s := range subs {
		fmt.Fprintf(&mod, "\t%s v0.0.0\n", s.path)
	}
	for _, p := range slices.Sorted(maps.Keys(req)) {
		fmt.Fprintf(&mod, "\t%s %s\n", p, req[p])
	}
	mod.WriteString(")\n\n")
	for _, s := range subs {
		fmt.Fprintf(&mod, "replace %s => %s\n", s.path, s.dir)
	}

	tmp := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		path := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", mod.String())
	write("go.sum", sum.String())

	dirOf := func(b readmeBlock) string { return fmt.Sprintf("line%04d", b.line) }
	var checked []readmeBlock
	for _, b := range blocks {
		m := packageClause.FindStringSubmatch(b.code)
		switch {
		case b.fragment != "":
			continue
		case m == nil:
			continue // reported below
		}
		file := "block.go"
		if strings.HasSuffix(m[1], "_test") || strings.Contains(b.code, "\nfunc Test") {
			file = "block_test.go" // a test file: go vet checks test files too
		}
		write(filepath.Join(dirOf(b), file), b.code)
		checked = append(checked, b)
	}

	var out []byte
	if len(checked) > 0 {
		cmd := exec.CommandContext(ctx, goBin, "vet", "./...")
		cmd.Dir = tmp
		// -mod=mod: the temporary module has no complete go.sum of its
		// own; GOWORK=off and GOTOOLCHAIN=local: this tree and this go,
		// nothing else.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
		cmd.WaitDelay = 5 * time.Second
		start := time.Now()
		out, err = cmd.CombinedOutput()
		t.Logf("go vet of %d README blocks: %v", len(checked), time.Since(start).Round(time.Millisecond))
		if ctx.Err() != nil {
			t.Fatalf("go vet of the README blocks did not finish in time: %v\n%s", ctx.Err(), out)
		}
	}

	// Each block's own lines of the output, with its file's positions
	// turned into README lines.
	pos := regexp.MustCompile(`(?:\./)?line\d+/block(?:_test)?\.go:(\d+)`)
	for _, b := range blocks {
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			if b.fragment != "" {
				t.Skipf("README.md:%d is a fragment: %s", b.line, b.fragment)
			}
			if !packageClause.MatchString(b.code) {
				t.Fatalf("README.md:%d: the ```go block has no package clause: make it a whole file "+
					"(package, imports, func main) or mark it with <!-- fragment --> just before it\n%s", b.line, b.code)
			}
			var own []string
			for l := range strings.Lines(string(out)) {
				if !strings.Contains(l, dirOf(b)) {
					continue
				}
				l = pos.ReplaceAllStringFunc(l, func(s string) string {
					m := pos.FindStringSubmatch(s)
					var n int
					fmt.Sscan(m[1], &n)
					return fmt.Sprintf("README.md:%d", b.line+n-1)
				})
				own = append(own, strings.TrimRight(l, "\n"))
			}
			if len(own) > 0 {
				t.Errorf("README.md:%d: the ```go block does not compile or vet as shown:\n%s\n--- block:\n%s",
					b.line, strings.Join(own, "\n"), numbered(b))
			}
		})
	}
	if err != nil && !t.Failed() {
		t.Fatalf("go vet of the README blocks failed, and no block's lines say why: %v\n%s", err, out)
	}
}

// numbered returns a block's code with its README line numbers.
func numbered(b readmeBlock) string {
	var s strings.Builder
	n := b.line
	for l := range strings.Lines(b.code) {
		fmt.Fprintf(&s, "%4d| %s", n, l)
		n++
	}
	return s.String()
}
