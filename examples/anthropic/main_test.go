package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
)

// Canary keys of odd shape: none may show in an error or a status.
const (
	revokedKey = "sk-ant-api03-Revoked~key.with/odd=shape"
	limitedKey = "sk-ant-api03-Limited~key.with/odd=shape"
	goodKey    = "sk-ant-api03-Good~key.with/odd=shape"
)

var params = anthropic.MessageNewParams{
	Model:     anthropic.Model("claude-sonnet-4-5"),
	MaxTokens: 64,
	Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
}

func setup(t *testing.T, srv *failovertest.Server, keys ...string) (anthropic.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var members []failover.Member[failover.Upstream]
	for _, k := range keys {
		members = append(members, member(srv, k[len("sk-ant-api03-"):][:4], k))
	}
	client, pool, err := newClient(members)
	if err != nil {
		t.Fatal(err)
	}
	return client, pool
}

// checkSecrets fails if a key shows in the pool's status or in err.
func checkSecrets(t *testing.T, pool *failover.Pool[failover.Upstream], err error) {
	t.Helper()
	for _, k := range []string{revokedKey, limitedKey, goodKey} {
		for _, s := range pool.Status() {
			if strings.Contains(s.LastError, k) {
				t.Errorf("status of %s shows a key: %s", s.Name, s.LastError)
			}
		}
		if err != nil && strings.Contains(err.Error(), k) {
			t.Errorf("error shows a key: %v", err)
		}
	}
}

// A revoked key (401 authentication_error) is asked once and benched; the
// next key serves every call.
func TestRevokedKeySkipped(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.AnthropicUnauthorized())
	client, pool := setup(t, srv, revokedKey, goodKey)
	for i := range 4 {
		msg, err := client.Messages.New(context.Background(), params)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := msg.Content[0].Text; got != "ok" {
			t.Fatalf("call %d: text %q", i, got)
		}
	}
	if a, b := srv.Calls(revokedKey), srv.Calls(goodKey); a != 1 || b != 4 {
		t.Fatalf("calls: revoked=%d good=%d, want 1 4", a, b)
	}
	st := pool.Status()
	if st[0].Reason != failover.ReasonAuth || st[0].State != failover.CoolingDown {
		t.Fatalf("revoked member: %s %s, want cooling_down auth", st[0].State, st[0].Reason)
	}
	for _, r := range srv.Requests("") {
		if r.Key == "unused" || r.Path != "/v1/messages" {
			t.Fatalf("upstream request with key %q on %s", r.Key, r.Path)
		}
	}
	checkSecrets(t, pool, nil)
}

// A rate-limited key (429 rate_limit_error, retry-after: 20) is skipped
// for its retry-after and no longer, on fake time: the call after 20 s
// probes it, and it serves again.
func TestRateLimitedKeySkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script(limitedKey, failovertest.AnthropicRateLimited(20*time.Second), failovertest.AnthropicOK("back"))
		client, pool := setup(t, srv, limitedKey, goodKey)
		for i := range 3 {
			if _, err := client.Messages.New(t.Context(), params); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if a, b := srv.Calls(limitedKey), srv.Calls(goodKey); a != 1 || b != 3 {
			t.Fatalf("calls: limited=%d good=%d, want 1 3", a, b)
		}
		st := pool.Status()[0]
		if st.Reason != failover.ReasonRateLimit {
			t.Fatalf("limited member's reason %s", st.Reason)
		}
		if d := time.Until(st.Until); d < 20*time.Second || d > 21*time.Second {
			t.Fatalf("limited member cools %v, want its retry-after of 20 s", d)
		}
		time.Sleep(20*time.Second + time.Millisecond)
		msg, err := client.Messages.New(t.Context(), params)
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Content[0].Text; got != "back" || srv.Calls(limitedKey) != 2 {
			t.Fatalf("after 20 s: %q from %d calls of the limited key, want its own answer", got, srv.Calls(limitedKey))
		}
		checkSecrets(t, pool, nil)
	})
}

// A streaming call fails over while it opens: the revoked and the limited
// keys are skipped, the good key's events reach the SDK one by one, and
// the accumulated message is whole.
func TestStreaming(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.AnthropicUnauthorized())
	srv.Script(limitedKey, failovertest.AnthropicRateLimited(20*time.Second))
	srv.Script(goodKey, failovertest.AnthropicStream("Hel", "lo, ", "world"))
	client, pool := setup(t, srv, revokedKey, limitedKey, goodKey)

	stream := client.Messages.NewStreaming(context.Background(), params)
	defer stream.Close()
	var deltas []string
	var msg anthropic.Message
	var kinds []string
	for stream.Next() {
		ev := stream.Current()
		kinds = append(kinds, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
		if d, ok := ev.AsAny().(anthropic.ContentBlockDeltaEvent); ok {
			deltas = append(deltas, d.Delta.Text)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(deltas, "|"); got != "Hel|lo, |world" {
		t.Fatalf("deltas %q", got)
	}
	if kinds[0] != "message_start" || kinds[len(kinds)-1] != "message_stop" {
		t.Fatalf("events %v", kinds)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "Hello, world" || msg.StopReason != anthropic.StopReasonEndTurn {
		t.Fatalf("accumulated %+v", msg)
	}
	if a, b, c := srv.Calls(revokedKey), srv.Calls(limitedKey), srv.Calls(goodKey); a != 1 || b != 1 || c != 1 {
		t.Fatalf("calls: revoked=%d limited=%d good=%d, want 1 1 1", a, b, c)
	}
	if r := srv.Requests(goodKey)[0]; !r.Stream {
		t.Fatal("the good key's call was not a stream")
	}
	checkSecrets(t, pool, nil)
}

// The member's Model replaces the body's "model": the caller asks for one
// model, the upstream sees (and answers with) the member's.
func TestModelRewrite(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.AnthropicUnauthorized())
	srv.Script(goodKey, failovertest.Response{}) // the default: a message from the model asked
	rev, good := member(srv, "revoked", revokedKey), member(srv, "good", goodKey)
	good.Model = "claude-haiku-4-5"
	client, pool, err := newClient([]failover.Member[failover.Upstream]{rev, good})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Model != "claude-haiku-4-5" {
		t.Fatalf("answered by model %q, want the member's", msg.Model)
	}
	if got := srv.Requests(revokedKey)[0].Model; got != "claude-sonnet-4-5" {
		t.Fatalf("the member without a Model got model %q, want the caller's", got)
	}
	if got := srv.Requests(goodKey)[0].Model; got != "claude-haiku-4-5" {
		t.Fatalf("the upstream got model %q, want the member's", got)
	}
	if params.Model != "claude-sonnet-4-5" {
		t.Fatal("the caller's params changed")
	}
	checkSecrets(t, pool, nil)

	// Every member failing: the SDK gets the last upstream's error, typed.
	srv.Script(goodKey, failovertest.AnthropicOverloaded())
	_, err = client.Messages.New(context.Background(), params)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 529 {
		t.Fatalf("all failing: %v, want the SDK's error for the 529", err)
	}
	checkSecrets(t, pool, err)
}
