package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is one real provider error response in testdata/errors.
type fixture struct {
	file      string
	Provider  string            `json:"provider"`
	Case      string            `json:"case"`
	Source    string            `json:"source"`
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Stream    bool              `json:"stream"`
	ErrorText string            `json:"error_text"` // a transport error another SDK flattened to text
	Note      string            `json:"note"`       // why want differs from the provider's or a peer's reading
	Want      struct {
		Reason     failover.Reason `json:"reason"`
		RetryAfter string          `json:"retry_after"`
	} `json:"want"`
}

func loadFixtures(t *testing.T) []fixture {
	t.Helper()
	files, err := filepath.Glob("testdata/errors/*.json")
	require.NoError(t, err)
	var fxs []fixture
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var fx fixture
		require.NoError(t, json.Unmarshal(raw, &fx), file)
		fx.file = filepath.Base(file)
		require.NotEmpty(t, fx.Provider, file)
		require.True(t, strings.HasPrefix(fx.Source, "http"), "%s: source must be a URL", file)
		require.NotEmpty(t, fx.Want.Reason, file)
		fxs = append(fxs, fx)
	}
	return fxs
}

// Every fixture gives its reason, status and hint on both paths a provider
// error takes: a real go-openai client behind OpenAIMember, and Transport
// under a real go-openai client. The verdict is the one the pool acted on,
// caught by a classifier that defers to Classify.
func TestProviderFixtures(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		t.Run(strings.TrimSuffix(fx.file, ".json"), func(t *testing.T) {
			if fx.ErrorText != "" {
				synctest.Test(t, func(t *testing.T) {
					checkFixture(t, fx, failover.Classify(errors.New(fx.ErrorText)), "text")
				})
				return
			}
			synctest.Test(t, func(t *testing.T) { checkFixture(t, fx, viaOpenAI(t, fx), "go-openai") })
			synctest.Test(t, func(t *testing.T) { checkFixture(t, fx, viaTransport(t, fx), "Transport") })
		})
	}
}

func checkFixture(t *testing.T, fx fixture, v failover.Verdict, path string) {
	t.Helper()
	want := failover.Verdict{Reason: fx.Want.Reason, Status: v.Status, Reset: v.Reset}
	if fx.Want.RetryAfter != "" {
		d, err := time.ParseDuration(fx.Want.RetryAfter)
		require.NoError(t, err, fx.file)
		want.RetryAfter = d
	}
	if !fx.Stream && fx.ErrorText == "" {
		want.Status = fx.Status
	}
	if v != want {
		t.Errorf("%s via %s: got %s %d %v, want %s %d %v (%s: %s)", fx.file, path,
			v.Reason, v.Status, v.RetryAfter, want.Reason, want.Status, want.RetryAfter, fx.Provider, fx.Case)
	}
}

// fixtureServer answers every request with the fixture, in memory, so the
// test runs on synctest's fake clock (2000-01-01T00:00:00Z).
func fixtureServer(fx fixture) http.RoundTripper {
	return &handlerTransport{h: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range fx.Headers {
			w.Header().Set(k, v)
		}
		if fx.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			fmt.Fprintf(w, "data: %s\n\n", fx.Body)
			return
		}
		w.WriteHeader(fx.Status)
		_, _ = io.WriteString(w, fx.Body)
	})}
}

// handlerTransport serves requests in memory.
type handlerTransport struct{ h http.Handler }

func (t *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// recorder is a classifier that keeps the last verdict of Classify.
type recorder struct{ v *failover.Verdict }

func (r *recorder) option() failover.Option {
	return failover.WithClassifier(func(err error) (failover.Verdict, bool) {
		v := failover.Classify(err)
		r.v = &v
		return v, true
	})
}

var fixtureRequest = openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}

// chatCall makes the fixture's call, plain or streaming, on a
// go-openai-shaped client and returns its error.
func chatCall[S interface {
	Recv() (openai.ChatCompletionStreamResponse, error)
	Close() error
}](fx fixture, chat func(context.Context, openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error),
	stream func(context.Context, openai.ChatCompletionRequest) (S, error)) error {
	if !fx.Stream {
		_, err := chat(context.Background(), fixtureRequest)
		return err
	}
	s, err := stream(context.Background(), fixtureRequest)
	if err == nil {
		defer s.Close()
		_, err = s.Recv()
	}
	return err
}

func viaOpenAI(t *testing.T, fx fixture) failover.Verdict {
	cfg := openai.DefaultConfig("sk-fixture-key")
	cfg.BaseURL = "http://provider.test/v1"
	cfg.HTTPClient = &http.Client{Transport: fixtureServer(fx)}
	var rec recorder
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("m", cfg)}, rec.option())
	require.NoError(t, err)
	c := failover.NewOpenAI(p)
	err = chatCall(fx, c.CreateChatCompletion, c.CreateChatCompletionStream)
	require.Error(t, err, "the call must fail")
	require.NotNil(t, rec.v, "the pool classified nothing: %v", err)
	return *rec.v
}

// viaTransport sends the call through Transport under a go-openai client.
// A stream fixture is the first event of a 200 stream, which Transport
// reads within the attempt: an error there fails over.
func viaTransport(t *testing.T, fx fixture) failover.Verdict {
	var rec recorder
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{
		BaseURL: "http://provider.test/v1", Key: "fixture-key", Transport: fixtureServer(fx)}}}, rec.option())
	require.NoError(t, err)
	cfg := openai.DefaultConfig("caller")
	cfg.BaseURL = "http://failover.local/v1"
	cfg.HTTPClient = &http.Client{Transport: failover.NewTransport(p)}
	c := openai.NewClientWithConfig(cfg)
	err = chatCall(fx, c.CreateChatCompletion, c.CreateChatCompletionStream)
	require.Error(t, err, "the call must fail")
	require.NotNil(t, rec.v, "the pool classified nothing: %v", err)
	return *rec.v
}

// The corpus is as large and as wide as the README says, and
// testdata/errors/README.md lists every fixture. FAILOVER_UPDATE=1
// rewrites both from the fixtures.
func TestFixtureDocs(t *testing.T) {
	fxs := loadFixtures(t)
	providers := map[string]int{}
	for _, fx := range fxs {
		providers[fx.Provider]++
	}
	assert.GreaterOrEqual(t, len(fxs), 300, "fixtures")
	assert.GreaterOrEqual(t, len(providers), 25, "providers")

	var table strings.Builder
	table.WriteString("| file | provider | case | status | reason | hint | source |\n|---|---|---|---|---|---|---|\n")
	for _, fx := range fxs {
		status := fmt.Sprint(fx.Status)
		switch {
		case fx.Stream:
			status = "stream"
		case fx.ErrorText != "":
			status = "text"
		}
		fmt.Fprintf(&table, "| `%s` | %s | %s | %s | `%s` | %s | %s |\n", fx.file, fx.Provider,
			strings.ReplaceAll(fx.Case, "|", "/"), status, fx.Want.Reason, fx.Want.RetryAfter, fx.Source)
	}
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		names[i] = fmt.Sprintf("%s (%d)", name, providers[name])
	}
	summary := fmt.Sprintf("%d fixtures from %d providers, gateways, local servers and SDKs: %s.", len(fxs), len(providers), strings.Join(names, ", "))

	syncSection(t, "testdata/errors/README.md", "<!-- fixtures -->", "<!-- /fixtures -->", table.String())
	syncSection(t, "README.md", "<!-- fixture-count -->", "<!-- /fixture-count -->", summary+"\n")
}

// syncSection checks that the text between the markers in file is want, or
// writes it there when FAILOVER_UPDATE=1.
func syncSection(t *testing.T, file, begin, end, want string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	require.True(t, i >= 0 && j > i, "%s: markers %s … %s", file, begin, end)
	got := s[i+len(begin)+1 : j]
	if os.Getenv("FAILOVER_UPDATE") == "1" {
		require.NoError(t, os.WriteFile(file, []byte(s[:i+len(begin)+1]+want+s[j:]), 0o644))
		return
	}
	assert.Equal(t, want, got, "%s is stale: run FAILOVER_UPDATE=1 go test -run %s", file, t.Name())
}

// The README lists the text rules as the classifier has them.
func TestREADMETextRules(t *testing.T) {
	syncSection(t, "README.md", "<!-- text-rules -->", "<!-- /text-rules -->", failover.TextRuleTable())
}
