package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"google.golang.org/genai"
)

// Canary keys of odd shape: none may show in an error or a status.
const (
	revokedKey = "AIzaSy-Revoked~key.with/odd=shape"
	limitedKey = "AIzaSy-Limited~key.with/odd=shape"
	goodKey    = "AIzaSy-Good~key.with/odd=shape"
)

const model = "gemini-2.5-pro"

func setup(t *testing.T, srv *failovertest.Server, members ...failover.Member[failover.Upstream]) (*genai.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	client, pool, err := newClient(t.Context(), members)
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

// checkPaths checks that every upstream call went to
// /v1beta/models/{model}:{method}, the path the SDK asked for, whether the
// member's BaseURL ends in /v1beta or is a bare host (Transport keeps a
// shared version segment whole: once, never /v1betabeta).
func checkPaths(t *testing.T, srv *failovertest.Server, method string) {
	t.Helper()
	for _, r := range srv.Requests("") {
		if want := "/v1beta/models/" + r.Model + ":" + method; r.Path != want {
			t.Errorf("an upstream call went to %s, want %s", r.Path, want)
		}
	}
}

// A revoked key (400 INVALID_ARGUMENT, API_KEY_INVALID) is asked once and
// benched; the next key serves every call.
func TestRevokedKeySkipped(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.GeminiUnauthorized())
	client, pool := setup(t, srv, member(srv, "revoked", revokedKey), member(srv, "good", goodKey))
	for i := range 4 {
		resp, err := client.Models.GenerateContent(t.Context(), model, genai.Text("hi"), nil)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := resp.Text(); got != "ok" {
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
		if r.Key == "unused" {
			t.Fatal("the SDK's own key reached an upstream")
		}
	}
	checkPaths(t, srv, "generateContent")
	checkSecrets(t, pool, nil)
}

// A rate-limited key (429 RESOURCE_EXHAUSTED with RetryInfo retryDelay
// 20s) is skipped for its retryDelay and no longer, on fake time: the call
// after 20 s probes it, and it serves again. Its key goes as ?key= here,
// the other way Gemini takes one.
func TestRateLimitedKeySkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script(limitedKey, failovertest.GeminiRateLimited(20*time.Second), failovertest.GeminiOK("back"))
		limited := member(srv, "limited", limitedKey)
		limited.Client.Auth = failover.AuthQuery
		client, pool := setup(t, srv, limited, member(srv, "good", goodKey))
		for i := range 3 {
			if _, err := client.Models.GenerateContent(t.Context(), model, genai.Text("hi"), nil); err != nil {
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
			t.Fatalf("limited member cools %v, want its retryDelay of 20 s", d)
		}
		time.Sleep(20*time.Second + time.Millisecond)
		resp, err := client.Models.GenerateContent(t.Context(), model, genai.Text("hi"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Text(); got != "back" || srv.Calls(limitedKey) != 2 {
			t.Fatalf("after 20 s: %q from %d calls of the limited key, want its own answer", got, srv.Calls(limitedKey))
		}
		checkPaths(t, srv, "generateContent")
		checkSecrets(t, pool, nil)
	})
}

// A streaming call (:streamGenerateContent?alt=sse) fails over while it
// opens: the revoked and the limited keys are skipped, and the good key's
// chunks reach the SDK one by one. The good member's BaseURL is the bare
// host, without /v1beta: the SDK's path goes through whole.
func TestStreaming(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.GeminiUnauthorized())
	srv.Script(limitedKey, failovertest.GeminiRateLimited(20*time.Second))
	srv.Script(goodKey, failovertest.GeminiStream("Hel", "lo, ", "world"))
	good := member(srv, "good", goodKey)
	good.Client.BaseURL = "https://generativelanguage.googleapis.com"
	client, pool := setup(t, srv, member(srv, "revoked", revokedKey), member(srv, "limited", limitedKey), good)

	var texts []string
	var last *genai.GenerateContentResponse
	for chunk, err := range client.Models.GenerateContentStream(t.Context(), model, genai.Text("hi"), nil) {
		if err != nil {
			t.Fatal(err)
		}
		texts, last = append(texts, chunk.Text()), chunk
	}
	if got := strings.Join(texts, "|"); got != "Hel|lo, |world" {
		t.Fatalf("chunks %q", got)
	}
	if last == nil || last.Candidates[0].FinishReason != genai.FinishReasonStop || last.UsageMetadata == nil {
		t.Fatalf("last chunk %+v", last)
	}
	if a, b, c := srv.Calls(revokedKey), srv.Calls(limitedKey), srv.Calls(goodKey); a != 1 || b != 1 || c != 1 {
		t.Fatalf("calls: revoked=%d limited=%d good=%d, want 1 1 1", a, b, c)
	}
	if r := srv.Requests(goodKey)[0]; !r.Stream {
		t.Fatal("the good key's call was not a stream")
	}
	checkPaths(t, srv, "streamGenerateContent")
	checkSecrets(t, pool, nil)
}

// The member's Model replaces the model the caller asked for. Gemini
// carries the model in the path (models/{model}:generateContent), not in
// the body: Transport rewrites that segment.
func TestModelRewrite(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script(revokedKey, failovertest.GeminiUnauthorized())
	rev, good := member(srv, "revoked", revokedKey), member(srv, "good", goodKey)
	good.Model = "gemini-2.5-flash"
	client, pool := setup(t, srv, rev, good)

	resp, err := client.Models.GenerateContent(t.Context(), model, genai.Text("hi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Requests(revokedKey)[0].Model; got != model {
		t.Fatalf("the member without a Model got model %q, want the caller's", got)
	}
	if got := srv.Requests(goodKey)[0].Model; got != "gemini-2.5-flash" {
		t.Errorf("the upstream got model %q, want the member's", got)
	}
	if resp.ModelVersion != "gemini-2.5-flash" {
		t.Errorf("answered by model %q, want the member's", resp.ModelVersion)
	}
	checkSecrets(t, pool, nil)

	// Every member failing: the SDK gets the last upstream's error, typed.
	srv.Script(goodKey, failovertest.GeminiOverloaded())
	_, err = client.Models.GenerateContent(context.Background(), model, genai.Text("hi"), nil)
	var ae genai.APIError
	if !errors.As(err, &ae) || ae.Code != 503 || ae.Status != "UNAVAILABLE" {
		t.Fatalf("all failing: %v, want the SDK's error for the 503", err)
	}
	checkSecrets(t, pool, err)
}
