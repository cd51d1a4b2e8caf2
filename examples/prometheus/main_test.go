package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llmfailover/failover"
)

// readmeMetric is one metric of the README's table in "### OpenTelemetry".
type readmeMetric struct {
	otel   string         // the OpenTelemetry name, such as failover.member.requests
	family string         // the Prometheus family the exporter makes of it
	typ    dto.MetricType // its Prometheus type
	labels []readmeLabel  // the attributes the row lists, as labels
	kind   string         // the Kind cell, for messages
	row    string         // the row, for messages
}

// readmeLabel is an attribute of a row: somewhere is set when the row
// qualifies it ("on a failure"), so only some samples carry it.
type readmeLabel struct {
	name      string
	somewhere bool
}

var backticked = regexp.MustCompile("`([^`]+)`")

// units are the unit suffixes the exporter appends, by OpenTelemetry
// unit; units in braces, such as {attempt}, add none.
var units = map[string]string{"s": "seconds", "ms": "milliseconds", "By": "bytes"}

// readmeMetrics reads the metrics table of the README's "### OpenTelemetry"
// section and maps each row as the Prometheus exporter names things: dots
// become underscores, a unit adds its suffix and a counter "_total".
func readmeMetrics(t *testing.T, path string) []readmeMetric {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "### OpenTelemetry" })
	if start < 0 {
		t.Fatalf("%s has no ### OpenTelemetry section", path)
	}
	var out []readmeMetric
	inTable := false
	for _, l := range lines[start+1:] {
		l = strings.TrimSpace(l)
		if !inTable {
			if strings.HasPrefix(l, "## ") || strings.HasPrefix(l, "### ") {
				break // the section ended before a table
			}
			if cells := cells(l); len(cells) == 3 && cells[0] == "Metric" && cells[1] == "Kind" {
				inTable = true
			}
			continue
		}
		if !strings.HasPrefix(l, "|") {
			break
		}
		cs := cells(l)
		if len(cs) != 3 || strings.Trim(cs[0], "- :") == "" {
			continue // the separator row
		}
		typ, unit := kindOf(cs[1])
		labels := labelsOf(cs[2])
		for _, m := range backticked.FindAllStringSubmatch(cs[0], -1) {
			out = append(out, readmeMetric{otel: m[1], family: familyName(m[1], typ, unit), typ: typ,
				labels: labels, kind: cs[1], row: l})
		}
	}
	if len(out) == 0 {
		t.Fatalf("found no metrics table in the ### OpenTelemetry section of %s", path)
	}
	return out
}

// cells splits a Markdown table row.
func cells(row string) []string {
	row = strings.TrimSpace(row)
	if !strings.HasPrefix(row, "|") {
		return nil
	}
	parts := strings.Split(strings.Trim(row, "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// kindOf reads a Kind cell such as "histogram, s, one call ..." or
// "observable counter, calls answered": the Prometheus type and the unit.
func kindOf(kind string) (dto.MetricType, string) {
	parts := strings.Split(kind, ",")
	k := strings.ToLower(strings.TrimSpace(parts[0]))
	typ := dto.MetricType_UNTYPED
	switch {
	case strings.Contains(k, "histogram"):
		typ = dto.MetricType_HISTOGRAM
	case strings.Contains(k, "up-down"), strings.Contains(k, "updown"):
		typ = dto.MetricType_GAUGE // a non-monotonic sum
	case strings.Contains(k, "counter"):
		typ = dto.MetricType_COUNTER
	case strings.Contains(k, "gauge"):
		typ = dto.MetricType_GAUGE
	}
	unit := ""
	for _, p := range parts[1:] {
		if u, ok := units[strings.Trim(strings.TrimSpace(p), "`")]; ok {
			unit = u
		}
	}
	return typ, unit
}

// familyName is the exporter's name for an OpenTelemetry metric.
func familyName(otel string, typ dto.MetricType, unit string) string {
	name := promName(otel)
	if unit != "" && !strings.HasSuffix(name, "_"+unit) {
		name += "_" + unit
	}
	if typ == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
		name += "_total"
	}
	return name
}

// promName turns an OpenTelemetry name or attribute key into a legacy
// Prometheus name: every character but letters, digits and '_' becomes '_'.
func promName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, s)
}

// labelsOf reads an Attributes cell: the backticked keys outside
// parentheses (inside them are values such as `auth`), separated by ','
// or ';'. A key followed by words ("on a failure") is qualified.
func labelsOf(cell string) []readmeLabel {
	var b strings.Builder
	depth := 0
	for _, r := range cell {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	var out []readmeLabel
	for _, seg := range strings.FieldsFunc(b.String(), func(r rune) bool { return r == ',' || r == ';' }) {
		m := backticked.FindStringSubmatch(seg)
		if m == nil {
			continue
		}
		rest := strings.TrimSpace(strings.Replace(seg, m[0], "", 1))
		out = append(out, readmeLabel{name: promName(m[1]), somewhere: rest != ""})
	}
	return out
}

// scrape GETs url over the network, bounded, and parses the text format.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %s, Content-Type %q\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams, body
}

// labels returns a sample's labels, without the exporter's otel_scope_*.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		if !strings.HasPrefix(lp.GetName(), "otel_scope_") {
			out[lp.GetName()] = lp.GetValue()
		}
	}
	return out
}

// value is a counter's or gauge's value, or a histogram's count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// TestMetricsFollowTheREADME drives the demo's scripted run, scrapes
// /metrics over HTTP and checks the scrape against the README's table:
// every metric it lists exists with its type and labels, and nothing
// else does; a few values per member, and no key anywhere.
func TestMetricsFollowTheREADME(t *testing.T) {
	// The hedge's loser ends after its call returns: the scrape waits
	// for it, so that no attempt is still in flight.
	lost := make(chan string, 8)
	d, err := newDemo(failover.WithHooks(failover.Hooks{
		Attempt: func(ctx context.Context, _ string, _ int) (context.Context, func(failover.AttemptEnd)) {
			return ctx, func(e failover.AttemptEnd) {
				if e.Lost {
					select {
					case lost <- e.Member:
					default:
					}
				}
			}
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.run(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-lost:
		if m != "free" {
			t.Errorf("the hedge's loser is %s, want free", m)
		}
	case <-ctx.Done():
		t.Fatal("the hedge's loser never ended")
	}
	ts := httptest.NewServer(d.handler) // on loopback
	defer ts.Close()
	fams, body := scrape(t, ts.URL+"/metrics")

	want := readmeMetrics(t, "../../README.md")
	documented := map[string]bool{}
	for _, w := range want {
		documented[w.family] = true
		f, ok := fams[w.family]
		if !ok {
			t.Errorf("README lists %s (%s), but the scrape has no %s", w.otel, w.kind, w.family)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("%s (%s in the README, %q): type %s, want %s", w.family, w.otel, w.kind, f.GetType(), w.typ)
		}
		if len(f.GetMetric()) == 0 {
			t.Errorf("%s has no samples", w.family)
			continue
		}
		allowed := map[string]bool{}
		for _, l := range w.labels {
			allowed[l.name] = true
			n := 0
			for _, m := range f.GetMetric() {
				if _, ok := labels(m)[l.name]; ok {
					n++
				}
			}
			switch {
			case n == 0:
				t.Errorf("%s: no sample has the label %s the README lists", w.family, l.name)
			case !l.somewhere && n != len(f.GetMetric()):
				t.Errorf("%s: %d of %d samples have the label %s, the README lists it unqualified", w.family, n, len(f.GetMetric()), l.name)
			}
		}
		for _, m := range f.GetMetric() {
			for k := range labels(m) {
				if !allowed[k] {
					t.Errorf("%s: label %s is not in the README's row %s", w.family, k, w.row)
				}
			}
		}
	}
	for name := range fams {
		if (strings.HasPrefix(name, "failover_") || strings.HasPrefix(name, "gen_ai_")) && !documented[name] {
			t.Errorf("the scrape has %s, which the README's table does not list", name)
		}
	}

	// Values per member, from the run's script.
	samples := func(family string, match map[string]string) []float64 {
		var found []float64
	next:
		for _, m := range fams[family].GetMetric() {
			ls := labels(m)
			for k, v := range match {
				if ls[k] != v { // v == "": the label is absent
					continue next
				}
			}
			found = append(found, value(m))
		}
		return found
	}
	get := func(family string, match map[string]string) float64 {
		t.Helper()
		found := samples(family, match)
		if len(found) != 1 {
			t.Errorf("%s%v: %d samples, want 1", family, match, len(found))
			return -1
		}
		return found[0]
	}
	check := func(family string, match map[string]string, want float64) {
		t.Helper()
		if got := get(family, match); got != want {
			t.Errorf("%s%v = %v, want %v", family, match, got, want)
		}
	}
	member := func(name string, kv ...string) map[string]string {
		m := map[string]string{"failover_member": name}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	keys := map[string]string{"free": freeKey, "revoked": revokedKey, "paid": paidKey}
	for name, key := range keys { // every upstream call is an attempt, the hedge's loser included
		check("failover_member_requests_total", member(name), float64(d.srv.Calls(key)))
	}
	check("failover_member_failures_total", member("revoked", "failover_reason", "auth"), float64(d.srv.Calls(revokedKey)))
	check("failover_member_failures_total", member("free", "failover_reason", "rate_limit"), 2)
	check("failover_member_failures_total", member("paid", "failover_reason", "server"), 1)
	check("failover_member_disabled_total", member("revoked", "failover_reason", "auth"), 1)
	check("failover_member_cooldowns_total", member("free", "failover_lane", "transient", "failover_reason", "rate_limit"), 2)
	check("failover_member_probes_total", member("free"), 1)
	check("failover_member_recoveries_total", member("free"), 1)
	check("failover_member_hedges_total", member("paid"), 1)
	check("failover_retry_budget_refusals_total", member("free"), 1)
	// Skips: counted from the calls no member served, or (the README's
	// kind says "observable counter") read from Status.Skipped, which
	// counts every call that passed a member over.
	observed := slices.ContainsFunc(want, func(w readmeMetric) bool {
		return w.otel == "failover.member.skips" && strings.HasPrefix(strings.ToLower(w.kind), "observable")
	})
	if !observed {
		check("failover_member_skips_total", member("revoked", "failover_skip_cause", "disabled"), 2)
		check("failover_member_skips_total", member("free", "failover_skip_cause", "cooling"), 1)
	} else {
		for _, s := range d.pool.Status() {
			for cause, n := range map[string]uint64{"cooling": s.Skipped.Cooling, "probing": s.Skipped.Probing,
				"disabled": s.Skipped.Disabled, "limited": s.Limited} {
				match := member(s.Name, "failover_skip_cause", cause)
				if n == 0 && len(samples("failover_member_skips_total", match)) == 0 {
					continue // a zero may be left out
				}
				check("failover_member_skips_total", match, float64(n))
			}
		}
	}
	check("failover_attempt_duration_seconds", member("paid", "error_type", ""), 4)
	check("failover_attempt_duration_seconds", member("revoked", "error_type", "auth"), 1)
	op := func(name, model, errType string) map[string]string {
		return member(name, "gen_ai_operation_name", "chat", "gen_ai_provider_name", "openai",
			"gen_ai_request_model", model, "error_type", errType, "gen_ai_response_model", "")
	}
	named := func(m map[string]string) map[string]string {
		m["gen_ai_response_model"] = "gpt-4o-2024-08-06" // the answers name it; the stream's usage came after the call
		return m
	}
	check("gen_ai_client_operation_duration_seconds", named(op("paid", "gpt-4o", "")), 3)
	check("gen_ai_client_operation_duration_seconds", op("paid", "gpt-4o", ""), 1)
	check("gen_ai_client_operation_duration_seconds", named(op("free", "gpt-4o-mini", "")), 1)
	check("gen_ai_client_operation_duration_seconds", op("free", "gpt-4o-mini", "rate_limit"), 1)
	check("gen_ai_client_operation_duration_seconds", op("paid", "gpt-4o", "server"), 1)
	// Three answers of the paid key reported usage (the stream did not),
	// one of the free key's.
	check("failover_member_tokens_total", member("paid", "gen_ai_token_type", "input"), 3*promptTokens)
	check("failover_member_tokens_total", member("paid", "gen_ai_token_type", "output"), 3*completionTokens)
	check("failover_member_tokens_total", member("free", "gen_ai_token_type", "input"), promptTokens)
	check("failover_member_tokens_total", member("revoked", "gen_ai_token_type", "output"), 0)
	wantState := map[string]string{"free": "cooling_down", "revoked": "disabled", "paid": "active"}
	for _, s := range d.pool.Status() {
		if wantState[s.Name] != s.State.String() {
			t.Errorf("%s is %s, the run should leave it %s", s.Name, s.State, wantState[s.Name])
		}
		check("failover_member_served_total", member(s.Name), float64(s.Served))
		check("failover_member_in_flight", member(s.Name), 0)
		for _, state := range []string{"active", "cooling_down", "probing", "disabled"} {
			v := 0.0
			if state == s.State.String() {
				v = 1
			}
			check("failover_member_state", member(s.Name, "failover_state", state), v)
		}
	}
	check("failover_member_served_total", member("paid"), 4)

	// No key, whole or in part, in any sample or anywhere in the text.
	canaries := []string{freeKey, revokedKey, paidKey, "7f3a9c2e5b1d40a8", "Cn4ry", "0dd_shape"}
	for _, c := range canaries {
		if bytes.Contains(bytes.ToLower(body), []byte(strings.ToLower(c))) {
			t.Errorf("the scrape carries the key fragment %q", c)
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, c := range canaries {
					if strings.Contains(lp.GetName()+"="+lp.GetValue(), c) {
						t.Errorf("%s: label %s=%q carries %q", name, lp.GetName(), lp.GetValue(), c)
					}
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("the scrape:\n%s", body)
	}
}

// TestREADMEParsing checks the table reader on rows shaped like the
// README's: two metrics in one cell, values in parentheses, a qualified
// label, an observable counter, a histogram without a unit suffix.
func TestREADMEParsing(t *testing.T) {
	cases := []struct {
		row    string
		want   []string
		typ    dto.MetricType
		labels []readmeLabel
	}{
		{"| `failover.member.probes`, `failover.member.recoveries` | counters | `failover.member` |",
			[]string{"failover_member_probes_total", "failover_member_recoveries_total"}, dto.MetricType_COUNTER,
			[]readmeLabel{{name: "failover_member"}}},
		{"| `failover.attempt.duration` | histogram, s | `failover.member`; `error.type` (the reason) on a failure |",
			[]string{"failover_attempt_duration_seconds"}, dto.MetricType_HISTOGRAM,
			[]readmeLabel{{name: "failover_member"}, {name: "error_type", somewhere: true}}},
		{"| `failover.member.skips` | observable counter, members skipped | `failover.member`, `failover.skip.cause` (`cooling`, `probing`) |",
			[]string{"failover_member_skips_total"}, dto.MetricType_COUNTER,
			[]readmeLabel{{name: "failover_member"}, {name: "failover_skip_cause"}}},
		{"| `gen_ai.client.token.usage` | histogram, {token}, per call | `gen_ai.token.type` (`input`, `output`), `failover.member` (the member that served, or the last tried) |",
			[]string{"gen_ai_client_token_usage"}, dto.MetricType_HISTOGRAM,
			[]readmeLabel{{name: "gen_ai_token_type"}, {name: "failover_member"}}},
		{"| `failover.member.state` | gauge, 1 for the current state | `failover.member`, `failover.state` |",
			[]string{"failover_member_state"}, dto.MetricType_GAUGE,
			[]readmeLabel{{name: "failover_member"}, {name: "failover_state"}}},
	}
	for _, c := range cases {
		dir := t.TempDir()
		doc := "## Observing\n\n### OpenTelemetry\n\ntext\n\n| Metric | Kind | Attributes |\n| --- | --- | --- |\n" + c.row + "\n\nmore text\n\n## Next\n"
		if err := os.WriteFile(dir+"/README.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		got := readmeMetrics(t, dir+"/README.md")
		var names []string
		for _, g := range got {
			names = append(names, g.family)
			if g.typ != c.typ {
				t.Errorf("%s: type %s, want %s", g.otel, g.typ, c.typ)
			}
			if !slices.Equal(g.labels, c.labels) {
				t.Errorf("%s: labels %v, want %v", g.otel, g.labels, c.labels)
			}
		}
		if !slices.Equal(names, c.want) {
			t.Errorf("%s: families %v, want %v", c.row, names, c.want)
		}
	}
}
