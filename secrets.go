package failover

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/llmfailover/failover/internal/redact"
	"github.com/sashabaranov/go-openai"
)

// The pool knows the credentials it holds and redacts each one literally,
// whatever its shape, from every text that leaves it: (*Error).Error(),
// events, log records, Status and StatusHandler, the errors the go-openai
// client returns and the error responses Transport hands back. The
// credentials are an Upstream's Key and Header values (but for the headers
// publicHeader names) and the credential each OpenAIMember client is seen to
// send. The shape rules of internal/redact apply on top.

// publicHeader reports whether an Upstream.Header name carries a setting,
// not a credential: redacting "2023-06-01" from every message would only
// hide dates.
func publicHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Anthropic-Version", "Anthropic-Beta", "Openai-Beta", "Http-Referer", "Referer",
		"X-Title", "User-Agent", "Accept", "Content-Type":
		return true
	}
	return false
}

// secretSet is what one configuration of the pool knows of its members'
// credentials.
type secretSet struct {
	static  []string          // Upstream keys and header values
	learned []*redact.Learned // one per go-openai member built by OpenAIMember
	cache   atomic.Pointer[secretsCache]
}

type secretsCache struct {
	gen uint64 // the learned generations when built
	s   *redact.Secrets
}

// newSecretSet collects the credentials of members.
func newSecretSet[C any](members []Member[C]) *secretSet {
	ss := &secretSet{}
	for _, m := range members {
		if m.cred != nil {
			ss.learned = append(ss.learned, m.cred)
		}
		if u, ok := any(m.Client).(Upstream); ok {
			ss.static = append(ss.static, upstreamSecrets(u)...)
		}
	}
	return ss
}

// upstreamSecrets returns the credentials an Upstream sends.
func upstreamSecrets(u Upstream) []string {
	out := []string{u.Key}
	for k, vs := range u.Header {
		if publicHeader(k) {
			continue
		}
		for _, v := range vs {
			out = append(out, v, strings.TrimPrefix(strings.TrimPrefix(v, "Bearer "), "Basic "))
		}
	}
	return out
}

// get returns the current literal secrets; nil for none.
func (ss *secretSet) get() *redact.Secrets {
	if ss == nil {
		return nil
	}
	var gen uint64
	for _, l := range ss.learned {
		gen += l.Gen()
	}
	if c := ss.cache.Load(); c != nil && c.gen == gen {
		return c.s
	}
	values := append([]string(nil), ss.static...)
	for _, l := range ss.learned {
		values = append(values, l.Values()...)
	}
	s := redact.NewSecrets(values...)
	ss.cache.Store(&secretsCache{gen: gen, s: s})
	return s
}

// secrets returns the literal secrets of the pool's current members.
func (p *Pool[C]) secrets() *redact.Secrets { return p.cfg.Load().sec.get() }

// Bounds of error text that leaves the pool.
const (
	maxErrText  = 512     // Status.LastError
	maxLogText  = 2 << 10 // one error in (*Error).Error(), an event or a log record
	maxKeptText = 4 << 10 // an error's raw text kept for Status, before redaction
)

// keptText is the start of err's text, kept for Status.LastError: a huge
// error is not held for the life of the pool.
func keptText(err error) string {
	s := err.Error()
	if len(s) > maxKeptText {
		s = s[:maxKeptText]
	}
	return strings.Clone(s)
}

// redactedError shows the original error's text redacted and bounded, and
// unwraps to it.
type redactedError struct {
	err error
	sec *redact.Secrets
}

func (e redactedError) Error() string { return e.sec.Text(e.err.Error(), maxLogText) }
func (e redactedError) Unwrap() error { return e.err }

// redacted wraps err for an event.
func (p *Pool[C]) redacted(err error) error { return redactedError{err: err, sec: p.secrets()} }

// scrub redacts the pool's credentials, in place, from the text fields of
// an error that the go-openai client or Transport made for this call and
// returns to the caller as is (a stop reason such as a 400 comes back
// unchanged, and its message may echo the key).
func scrub(err error, sec *redact.Secrets) error {
	if err == nil {
		return nil
	}
	var ae *openai.APIError
	if errors.As(err, &ae) {
		ae.Message = sec.String(ae.Message)
		if ae.Param != nil {
			p := sec.String(*ae.Param)
			ae.Param = &p
		}
		if c, ok := ae.Code.(string); ok {
			ae.Code = sec.String(c)
		}
	}
	var re *openai.RequestError
	if errors.As(err, &re) && len(re.Body) > 0 {
		re.Body = []byte(sec.String(string(re.Body)))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = sec.String(ue.URL)
	}
	var he *HTTPError
	if errors.As(err, &he) {
		he.sec = sec
		he.Body = []byte(sec.String(string(he.Body)))
		for k, vs := range he.Header {
			for i, v := range vs {
				vs[i] = sec.String(v)
			}
			he.Header[k] = vs
		}
	}
	if text := err.Error(); len(text) > maxLogText || sec.String(text) != text {
		// A wrapper's text was made before the fields were redacted (go-openai's
		// "error, %w" of a stream), or the text is huge: show it redacted and
		// bounded; errors.As still finds the original.
		return redactedError{err: err, sec: sec}
	}
	return err
}

// cappedBody reads at most maxErrorBody bytes of an error response, then
// reports the end.
func cappedBody(rc io.ReadCloser) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, maxErrorBody), rc}
}
