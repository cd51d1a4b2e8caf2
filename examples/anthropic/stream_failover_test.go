package main

// Adversarial tests of failover.Transport under the real Anthropic SDK's
// streaming API, against loopback servers that speak Anthropic's wire
// format (event names and JSON fields as in anthropic-sdk-go's
// MessageStreamEventUnion and its apierror.Error).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/llmfailover/failover"
)

// Canary keys: none may show in an error or a status.
const (
	sfKeyA = "sk-ant-api03-CANARY-AAAA~stream/failover=1"
	sfKeyB = "sk-ant-api03-CANARY-BBBB~stream/failover=2"
)

// sfEvent is one SSE event as Anthropic writes it: an event line and a
// data line.
func sfEvent(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

var (
	sfMessageStart = sfEvent("message_start", `{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":1}}}`)
	sfPing         = sfEvent("ping", `{"type":"ping"}`)
	sfBlockStart   = sfEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	sfOverloaded   = sfEvent("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
)

func sfDelta(text string) string {
	return sfEvent("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, text))
}

// sfHealthy is a whole stream of the given text deltas.
func sfHealthy(deltas ...string) string {
	var b strings.Builder
	b.WriteString(sfMessageStart + sfBlockStart + sfPing)
	for _, d := range deltas {
		b.WriteString(sfDelta(d))
	}
	b.WriteString(sfEvent("content_block_stop", `{"type":"content_block_stop","index":0}`))
	b.WriteString(sfEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}`))
	b.WriteString(sfEvent("message_stop", `{"type":"message_stop"}`))
	return b.String()
}

// sfServer answers /v1/messages per x-api-key with a scripted SSE body,
// flushing after each event, and counts the requests of each key.
type sfServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]string // key -> events
	calls  map[string]*atomic.Int32
}

func newSFServer(t *testing.T, scripts map[string][]string) *sfServer {
	t.Helper()
	s := &sfServer{bodies: scripts, calls: map[string]*atomic.Int32{}}
	for k := range scripts {
		s.calls[k] = new(atomic.Int32)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Api-Key")
		s.mu.Lock()
		evs, ok := s.bodies[key]
		c := s.calls[key]
		s.mu.Unlock()
		if !ok || r.URL.Path != "/v1/messages" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`))
			return
		}
		c.Add(1)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		fl.Flush()
		for _, e := range evs {
			_, _ = w.Write([]byte(e))
			fl.Flush()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sfServer) count(key string) int { return int(s.calls[key].Load()) }

func sfClient(t *testing.T, srv *sfServer, keys ...string) (anthropic.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for i, k := range keys {
		ms = append(ms, failover.Member[failover.Upstream]{Name: string(rune('A' + i)), Priority: i, Client: failover.Upstream{
			BaseURL: srv.URL + "/v1", Key: k, Auth: failover.AuthXAPIKey,
		}})
	}
	pool, err := failover.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL("http://failover.local/"),
		option.WithAPIKey("unused-caller-key"),
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool
}

// sfDrain reads the SDK's stream and returns the text deltas and the
// stream's error.
func sfDrain(t *testing.T, client anthropic.Client) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream := client.Messages.NewStreaming(ctx, params)
	defer stream.Close()
	var text strings.Builder
	var msg anthropic.Message
	for stream.Next() {
		ev := stream.Current()
		if err := msg.Accumulate(ev); err != nil {
			return text.String(), err
		}
		if d, ok := ev.AsAny().(anthropic.ContentBlockDeltaEvent); ok {
			text.WriteString(d.Delta.Text)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the stream took too long: %v", ctx.Err())
	}
	return text.String(), stream.Err()
}

func sfNoSecrets(t *testing.T, pool *failover.Pool[failover.Upstream], err error) {
	t.Helper()
	for _, k := range []string{sfKeyA, sfKeyB} {
		for _, s := range pool.Status() {
			if strings.Contains(s.LastError, k) || strings.Contains(fmt.Sprint(s), k) {
				t.Errorf("status of %s shows a key", s.Name)
			}
		}
		if err != nil && strings.Contains(err.Error(), k) {
			t.Errorf("error shows a key: %v", err)
		}
	}
}

// A's 200 stream fails with overloaded_error before any content, in the
// shapes Anthropic sends: the SDK gets B's whole stream, A is asked once
// and rests as overloaded.
func TestSFAnthropicErrorBeforeContentFailsOver(t *testing.T) {
	cases := map[string][]string{
		"after message_start and ping":  {sfMessageStart, sfPing, sfOverloaded},
		"after an empty text block":     {sfMessageStart, sfBlockStart, sfPing, sfOverloaded},
		"as the first event":            {sfOverloaded},
		"with CRLF line ends":           {strings.ReplaceAll(sfMessageStart+sfPing+sfOverloaded, "\n", "\r\n")},
		"split byte by byte (see loop)": nil, // filled below
	}
	whole := sfMessageStart + sfPing + sfBlockStart + sfOverloaded
	var bytewise []string
	for i := range len(whole) {
		bytewise = append(bytewise, whole[i:i+1])
	}
	cases["split byte by byte (see loop)"] = bytewise
	for name, a := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newSFServer(t, map[string][]string{sfKeyA: a, sfKeyB: {sfHealthy("Hel", "lo")}})
			client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
			text, err := sfDrain(t, client)
			if err != nil {
				t.Fatalf("stream error: %v", err)
			}
			if text != "Hello" {
				t.Fatalf("text %q, want B's %q", text, "Hello")
			}
			if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
				t.Fatalf("upstream calls A=%d B=%d, want 1 1", a, b)
			}
			st := pool.Status()
			if st[0].Reason != failover.ReasonOverloaded || st[0].State != failover.CoolingDown {
				t.Fatalf("A: %s %s (%q), want cooling_down overloaded", st[0].State, st[0].Reason, st[0].LastError)
			}
			sfNoSecrets(t, pool, err)
		})
	}
}

// An error after a text delta must not fail over: the caller has text,
// and the SDK must see the error event itself.
func TestSFAnthropicErrorAfterTextReachesSDK(t *testing.T) {
	srv := newSFServer(t, map[string][]string{
		sfKeyA: {sfMessageStart, sfBlockStart, sfDelta("partial"), sfOverloaded},
		sfKeyB: {sfHealthy("never")},
	})
	client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
	text, err := sfDrain(t, client)
	if text != "partial" {
		t.Fatalf("text %q, want A's partial text", text)
	}
	if err == nil {
		t.Fatal("no error: the SDK must see the mid-stream error event")
	}
	var ae *anthropic.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v, want *anthropic.Error from the error event", err, err)
	}
	if ae.Type() != "overloaded_error" {
		t.Fatalf("error type %q, want overloaded_error", ae.Type())
	}
	if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 0 {
		t.Fatalf("upstream calls A=%d B=%d, want 1 0", a, b)
	}
	sfNoSecrets(t, pool, err)
}

// A stream of only message_start, then EOF, has sent nothing of use:
// fails over. So does a 200 with an empty body.
func TestSFAnthropicMessageStartThenEOF(t *testing.T) {
	for name, a := range map[string][]string{
		"message_start then EOF":       {sfMessageStart},
		"message_start, ping then EOF": {sfMessageStart, sfPing},
		"empty body":                   {},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newSFServer(t, map[string][]string{sfKeyA: a, sfKeyB: {sfHealthy("ok")}})
			client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
			text, err := sfDrain(t, client)
			if err != nil || text != "ok" {
				t.Fatalf("text %q err %v, want B's ok", text, err)
			}
			if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
				t.Fatalf("upstream calls A=%d B=%d, want 1 1", a, b)
			}
			sfNoSecrets(t, pool, err)
		})
	}
}

// With one member whose stream fails with overloaded_error, the SDK gets
// an *anthropic.Error with status 529 and type overloaded_error, and
// nothing panics.
func TestSFAnthropicSingleMemberOverloaded(t *testing.T) {
	srv := newSFServer(t, map[string][]string{sfKeyA: {sfMessageStart, sfPing, sfOverloaded}})
	client, pool := sfClient(t, srv, sfKeyA)
	text, err := sfDrain(t, client)
	if text != "" {
		t.Fatalf("text %q, want none", text)
	}
	var ae *anthropic.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v, want *anthropic.Error", err, err)
	}
	if ae.StatusCode != 529 || ae.Type() != "overloaded_error" {
		t.Fatalf("status %d type %q, want 529 overloaded_error", ae.StatusCode, ae.Type())
	}
	if ae.Response == nil || ae.Response.Header.Get("X-Failover-Member") != "A" {
		t.Fatalf("response without X-Failover-Member A")
	}
	if srv.count(sfKeyA) != 1 {
		t.Fatalf("A asked %d times", srv.count(sfKeyA))
	}
	sfNoSecrets(t, pool, err)

	// Non-streaming New against the same state: the pool has no member
	// left (A rests), so the SDK gets a well-formed error, no panic.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = client.Messages.New(ctx, params)
	if !errors.As(err, &ae) {
		t.Fatalf("second call: %T %v, want *anthropic.Error", err, err)
	}
	sfNoSecrets(t, pool, err)
}

// A stream whose error event's message echoes a key (as a misbehaving
// proxy might) does not leak it to the SDK or Status.
func TestSFAnthropicErrorEventEchoingKeyIsRedacted(t *testing.T) {
	leaky := sfEvent("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded for key `+sfKeyA+`"}}`)
	srv := newSFServer(t, map[string][]string{sfKeyA: {sfMessageStart, leaky}})
	client, pool := sfClient(t, srv, sfKeyA)
	_, err := sfDrain(t, client)
	if err == nil {
		t.Fatal("no error")
	}
	var ae *anthropic.Error
	if errors.As(err, &ae) && strings.Contains(ae.RawJSON(), sfKeyA) {
		t.Errorf("the SDK's error body shows the key: %s", ae.RawJSON())
	}
	sfNoSecrets(t, pool, err)
}

// A stream cut in the middle of its first content event (message_start,
// then half a content_block_delta, then EOF) has sent the caller nothing
// it can use: no event has content or an error, so by the README ("or
// the stream ends before any event ... the call fails over") it should
// fail over to B.
func TestSFAnthropicCutInsideFirstEvent(t *testing.T) {
	srv := newSFServer(t, map[string][]string{
		sfKeyA: {sfMessageStart + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel"},
		sfKeyB: {sfHealthy("ok")},
	})
	client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
	text, err := sfDrain(t, client)
	if err != nil || text != "ok" {
		t.Fatalf("text %q err %v, want B's ok", text, err)
	}
	if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
		t.Fatalf("upstream calls A=%d B=%d, want 1 1", a, b)
	}
	sfNoSecrets(t, pool, err)
}

// A whole, healthy stream whose last bytes and end arrive in one Read
// (a short answer, a buffering proxy, HTTP/2): the SDK must get it. And
// a preamble plus an error event arriving that way must fail over as
// overloaded, not as a network error.
func TestSFAnthropicStreamEndingInOneRead(t *testing.T) {
	t.Run("healthy, one member", func(t *testing.T) {
		srv := newSFServer(t, map[string][]string{sfKeyB: {sfHealthy("ok")}})
		client, pool := sfClient(t, srv, sfKeyB)
		text, err := sfDrain(t, client)
		if err != nil || text != "ok" {
			t.Fatalf("text %q err %v, want ok", text, err)
		}
		sfNoSecrets(t, pool, err)
	})
	t.Run("overloaded, one member", func(t *testing.T) {
		srv := newSFServer(t, map[string][]string{sfKeyA: {sfMessageStart + sfPing + sfOverloaded}})
		client, pool := sfClient(t, srv, sfKeyA)
		_, err := sfDrain(t, client)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != 529 {
			t.Fatalf("error %T %v, want *anthropic.Error 529", err, err)
		}
		if r := pool.Status()[0].Reason; r != failover.ReasonOverloaded {
			t.Fatalf("A's reason %s, want overloaded", r)
		}
	})
}
