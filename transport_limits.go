package failover

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// memberHeader names the member that served a response Transport returns.
const memberHeader = "X-Failover-Member"

// countsTokens reports whether a member of the pool has a limit that
// needs a call's tokens: TPM, TPD or ContextTokens.
func (p *Pool[C]) countsTokens() bool {
	c := p.cfg.Load()
	for i := range c.members {
		if l := &c.members[i].Limits; l.TPM > 0 || l.TPD > 0 || l.ContextTokens > 0 {
			return true
		}
	}
	return false
}

// bodyEstimate returns the token estimate of a request for the pool's
// limits (see EstimateBodyTokens), 0 when no member limits tokens or the
// path sends no prompt. A body that replays itself (GetBody) is read once
// to be estimated and then kept, if it fits limit, so that body and raw
// become the buffered copy; a larger one counts a token for every four
// bytes of its length.
func (t *Transport) bodyEstimate(req *http.Request, body *func() (io.ReadCloser, []byte, error), raw *[]byte, limit int64) (int, error) {
	if !isModelPath(req.URL.Path) || !t.Pool.countsTokens() {
		return 0, nil
	}
	if *raw == nil && req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		_ = rc.Close()
		if err != nil {
			return 0, err
		}
		if int64(len(b)) > limit {
			return int(max(req.ContentLength, limit) / 4), nil
		}
		*raw = b
		*body = func() (io.ReadCloser, []byte, error) { return io.NopCloser(bytes.NewReader(b)), b, nil }
	}
	return EstimateBodyTokens(req.URL.Path, *raw), nil
}

// restIfSpent rests a member whose successful response says its rate limit
// is spent, as [OpenAI] does: x-ratelimit-remaining-requests: 0, or fewer
// remaining tokens (x-ratelimit-remaining-tokens, anthropic-ratelimit-*)
// than a call like this one needs, until the matching reset. tokens is the
// call's estimate; when the pool did not need one, it is made here, from
// raw, only if a remaining-tokens header came.
func (t *Transport) restIfSpent(name string, h http.Header, tokens int, path string, raw []byte, contentLength int64) {
	if len(h) == 0 || !hasRemaining(h, false) {
		return // the common case: no rate-limit headers, nothing parsed
	}
	if tokens == 0 && hasRemaining(h, true) {
		tokens = restEstimate(path, raw, contentLength)
	}
	now := t.Pool.now()
	if d := exhaustedFor(h, tokens, now); d > 0 {
		t.Pool.rest(name, now.Add(d), now)
	}
}

// restEstimate is a call's tokens for a proactive rest when the pool did
// not estimate it: from the body when Transport holds it, else a token per
// 4 bytes of its length.
func restEstimate(path string, raw []byte, contentLength int64) int {
	if raw != nil {
		return EstimateBodyTokens(path, raw)
	}
	return int(max(contentLength, 0) / 4)
}

// hasRemaining reports whether h says how many requests or tokens remain
// (with tokens, only tokens).
func hasRemaining(h http.Header, tokens bool) bool {
	for _, dim := range resetDims {
		if (!tokens || strings.Contains(dim.remaining, "Tokens")) && h.Get(dim.remaining) != "" {
			return true
		}
	}
	return false
}
