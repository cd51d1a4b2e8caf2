package failover

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sashabaranov/go-openai"
)

// Reason is why a call failed, as decided by a [Classifier].
// The reason picks the cooldown [Lane] and whether Do tries another member.
type Reason string

// The reasons of the default classifier. See the classification table in the README.
const (
	ReasonRateLimit     Reason = "rate_limit"     // 429, rate_limit_exceeded, RESOURCE_EXHAUSTED
	ReasonQuota         Reason = "quota"          // 402, insufficient_quota, billing
	ReasonOverloaded    Reason = "overloaded"     // 503, 529, overloaded_error
	ReasonServer        Reason = "server"         // 500, 502, 504, other 5xx, mid-stream server_error
	ReasonTimeout       Reason = "timeout"        // attempt timeout, network timeout, 408
	ReasonNetwork       Reason = "network"        // connection refused or reset, EOF, DNS, TLS
	ReasonAuth          Reason = "auth"           // 401, invalid_api_key, Gemini API_KEY_INVALID
	ReasonForbidden     Reason = "forbidden"      // 403
	ReasonNotFound      Reason = "not_found"      // 404, model_not_found
	ReasonContextLength Reason = "context_length" // the prompt does not fit the model's context
	ReasonContentFilter Reason = "content_filter" // content policy
	ReasonBadRequest    Reason = "bad_request"    // other 400, 413, 422
	ReasonCanceled      Reason = "canceled"       // the caller's context is done
	ReasonUnknown       Reason = "unknown"        // anything else

	// ReasonLimited is never a classification: it marks an Attempt skipped
	// because the call would exceed the member's Limits.
	ReasonLimited Reason = "limited"
)

// Lane is the cooldown schedule a [Reason] puts a member on.
type Lane int

// The cooldown lanes, from no cooldown to the longest.
const (
	LaneNone      Lane = iota // no cooldown
	LaneTransient             // rate limits, overload, 5xx, timeouts, network
	LaneQuota                 // quota and billing; cools the member's Group
	LanePermanent             // auth, forbidden, not found
)

var laneNames = [...]string{"none", "transient", "quota", "permanent"}

// String returns "none", "transient", "quota" or "permanent".
func (l Lane) String() string {
	if l >= 0 && int(l) < len(laneNames) {
		return laneNames[l]
	}
	return "Lane(" + strconv.Itoa(int(l)) + ")"
}

// Lane returns the cooldown lane of r. Unknown and request-shaped reasons
// (bad request, context length, content filter, canceled) have LaneNone.
func (r Reason) Lane() Lane {
	switch r {
	case ReasonRateLimit, ReasonOverloaded, ReasonServer, ReasonTimeout, ReasonNetwork:
		return LaneTransient
	case ReasonQuota:
		return LaneQuota
	case ReasonAuth, ReasonForbidden, ReasonNotFound:
		return LanePermanent
	}
	return LaneNone
}

// FailsOver reports whether Do tries another member after a failure for
// reason r. It is false for reasons that belong to the request, not to the
// member: the same request would fail everywhere (and burn every fallback's
// quota), so the provider's error is returned to the caller unchanged.
func (r Reason) FailsOver() bool {
	switch r {
	case ReasonContextLength, ReasonContentFilter, ReasonBadRequest, ReasonCanceled:
		return false
	}
	return true
}

// Verdict is a classifier's decision about one error.
type Verdict struct {
	Reason     Reason
	Status     int           // HTTP status when known, 0 otherwise
	RetryAfter time.Duration // the provider's retry hint, a floor for the cooldown; 0 if none
}

// Classifier classifies an error. It returns ok=false to leave the error to
// the default classifier, [Classify]. A classifier set with [WithClassifier]
// is consulted first.
type Classifier func(err error) (v Verdict, ok bool)

// Classify is the default classifier. It reads structured data first
// (go-openai's *APIError and *RequestError, network and syscall errors,
// context errors, an http.Header or RetryAfter method carried by the error)
// and message text last. It never takes a status from a stray number: only
// an anchored form such as "status code: 429" or "429 Too Many Requests".
// A nil error has the zero Verdict.
func Classify(err error) Verdict {
	return classifyAt(err, time.Now())
}

func classifyAt(err error, now time.Time) Verdict {
	if err == nil {
		return Verdict{}
	}
	v := classifyReason(err)
	v.RetryAfter = hintOf(err, now)
	if v.Reason == ReasonQuota && v.RetryAfter > 0 && v.RetryAfter <= quotaHintMax && v.Status == http.StatusTooManyRequests && !hasQuotaCode(err) {
		// Gemini words its per-minute limits like OpenAI's billing error
		// ("You exceeded your current quota, please check your plan and
		// billing details") but adds a short retry delay. A short hint on a
		// 429 without an explicit quota code is a rate limit.
		v.Reason = ReasonRateLimit
	}
	return v
}

// quotaHintMax is the longest retry hint that still marks a worded-as-quota
// 429 as a rate limit.
const quotaHintMax = 10 * time.Minute

func classifyReason(err error) Verdict {
	switch {
	case errors.Is(err, context.Canceled):
		return Verdict{Reason: ReasonCanceled}
	case errors.Is(err, context.DeadlineExceeded):
		return Verdict{Reason: ReasonTimeout}
	}
	for _, re := range requestErrors {
		if errors.Is(err, re) {
			return Verdict{Reason: ReasonBadRequest}
		}
	}
	if errors.Is(err, openai.ErrTooManyEmptyStreamMessages) || errors.Is(err, errSSELine) {
		return Verdict{Reason: ReasonServer}
	}
	// A RequestError first: it has the status and the raw body even when
	// go-openai half-parsed the body into an empty APIError it wraps.
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) {
		return classifyBody(reqErr.HTTPStatusCode, reqErr.Body)
	}
	var httpErr *HTTPError
	if errors.As(err, &httpErr) {
		return classifyBody(httpErr.StatusCode, httpErr.Body)
	}
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		return classifyAPIError(apiErr)
	}
	if v, ok := classifyNetwork(err); ok {
		return v
	}
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) && validStatus(sc.StatusCode()) {
		return classifyStatus(sc.StatusCode(), "", err.Error())
	}
	msg := err.Error()
	if status := statusFromText(msg); status != 0 {
		return classifyStatus(status, "", msg)
	}
	return Verdict{Reason: reasonFromText(msg, ReasonUnknown)}
}

// requestErrors are go-openai's checks of a request before it is sent: the
// request is at fault, so no other member is tried.
var requestErrors = []error{
	openai.ErrChatCompletionInvalidModel, openai.ErrChatCompletionStreamNotSupported,
	openai.ErrContentFieldsMisused, openai.ErrCompletionUnsupportedModel,
	openai.ErrCompletionStreamNotSupported, openai.ErrCompletionRequestPromptTypeNotSupported,
	openai.ErrReasoningModelMaxTokensDeprecated,
	openai.ErrO1BetaLimitationsMessageTypes, openai.ErrO1BetaLimitationsTools,
	openai.ErrReasoningModelLimitationsLogprobs, openai.ErrReasoningModelLimitationsOther,
	openai.ErrReasoningEffortUnsupported, openai.ErrReasoningToolsRequireResponses,
	openai.ErrReasoningSamplingUnsupported,
}

// classifyAPIError classifies go-openai's parsed error, including mid-stream
// errors, which have HTTPStatusCode 0.
func classifyAPIError(e *openai.APIError) Verdict {
	status := e.HTTPStatusCode
	code := ""
	switch c := e.Code.(type) {
	case string:
		code = c
	case int:
		code = strconv.Itoa(c)
	}
	if status == 0 {
		// Azure sends codes such as "429"; OpenRouter numeric codes.
		if n, err := strconv.Atoi(code); err == nil && validStatus(n) {
			status = n
		}
	}
	codes := code + " " + e.Type
	if e.InnerError != nil {
		codes += " " + e.InnerError.Code
	}
	return classifyStatus(status, codes, e.Message)
}

// classifyBody classifies a status and a raw body (an HTML page, or JSON in a
// shape go-openai did not parse, such as Gemini's array or Mistral's flat
// object).
func classifyBody(status int, body []byte) Verdict {
	codes, msg := bodyFields(body)
	if msg == "" {
		msg = string(body)
	}
	return classifyStatus(status, codes, msg)
}

// bodyFields extracts the code, type and status strings and the message from
// a JSON error body in any of the common shapes.
func bodyFields(body []byte) (codes, msg string) {
	type fields struct {
		Code    any    `json:"code"`
		Type    string `json:"type"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	type wrapped struct {
		fields
		Error json.RawMessage `json:"error"` // an object, or a message string (xAI)
	}
	var w wrapped
	if err := json.Unmarshal(body, &w); err != nil {
		var list []wrapped
		if json.Unmarshal(body, &list) != nil || len(list) == 0 {
			return "", ""
		}
		w = list[0]
	}
	f := w.fields
	var inner fields
	var text string
	switch {
	case json.Unmarshal(w.Error, &inner) == nil:
		f = inner
	case json.Unmarshal(w.Error, &text) == nil:
		f.Message = text
	}
	codes = fmt.Sprint(f.Code) + " " + f.Type + " " + f.Status
	for _, d := range f.Details {
		codes += " " + d.Reason
	}
	return codes, f.Message
}

// classifyStatus decides from a status (0 if unknown), structured codes
// (error code, type and status strings, space separated) and a message.
func classifyStatus(status int, codes, msg string) Verdict {
	v := Verdict{Status: status}
	if r := reasonFromCodes(strings.ToLower(codes), status); r != "" {
		v.Reason = r
		return v
	}
	switch {
	case status == http.StatusPaymentRequired:
		v.Reason = ReasonQuota
	case status == http.StatusUnauthorized:
		v.Reason = ReasonAuth
	case status == http.StatusForbidden:
		v.Reason = reasonFromText(msg, ReasonForbidden, ReasonQuota)
	case status == http.StatusNotFound:
		v.Reason = ReasonNotFound
	case status == http.StatusRequestTimeout:
		v.Reason = ReasonTimeout
	case status == http.StatusTooManyRequests:
		v.Reason = reasonFromText(msg, ReasonRateLimit, ReasonQuota)
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge, status == http.StatusUnprocessableEntity:
		v.Reason = reasonFromText(msg, ReasonBadRequest, ReasonContextLength, ReasonContentFilter, ReasonQuota, ReasonAuth, ReasonForbidden)
	case status == http.StatusServiceUnavailable, status == 529:
		v.Reason = ReasonOverloaded
	case status >= 500 && status <= 599:
		v.Reason = ReasonServer
	case status == 0:
		v.Reason = reasonFromText(msg, ReasonUnknown)
	default:
		v.Reason = ReasonUnknown
	}
	return v
}

// codeReasons maps provider error codes, types and statuses (lower case) to
// reasons. Only codes specific enough to decide on their own are listed:
// generic ones such as invalid_request_error leave the decision to the status.
var codeReasons = map[string]Reason{
	"insufficient_quota":           ReasonQuota,
	"billing_hard_limit_reached":   ReasonQuota,
	"billing_not_active":           ReasonQuota,
	"billing_error":                ReasonQuota,
	"insufficient_balance":         ReasonQuota,
	"payment_required":             ReasonQuota,
	"invalid_api_key":              ReasonAuth,
	"authentication_error":         ReasonAuth,
	"invalid_authentication":       ReasonAuth,
	"api_key_invalid":              ReasonAuth,
	"unauthenticated":              ReasonAuth,
	"permission_error":             ReasonForbidden,
	"permission_denied":            ReasonForbidden,
	"model_not_found":              ReasonNotFound,
	"not_found_error":              ReasonNotFound,
	"deploymentnotfound":           ReasonNotFound,
	"context_length_exceeded":      ReasonContextLength,
	"content_filter":               ReasonContentFilter,
	"content_policy_violation":     ReasonContentFilter,
	"responsibleaipolicyviolation": ReasonContentFilter,
	"rate_limit_exceeded":          ReasonRateLimit,
	"rate_limit_error":             ReasonRateLimit,
	"resource_exhausted":           ReasonRateLimit,
	"overloaded_error":             ReasonOverloaded,
	"unavailable":                  ReasonOverloaded,
	"deadline_exceeded":            ReasonTimeout,
}

// streamCodeReasons decide only when there is no HTTP status: mid-stream
// errors. With a status, the status is more precise (a 503 of type
// server_error is an overload).
var streamCodeReasons = map[string]Reason{
	"server_error": ReasonServer,
	"api_error":    ReasonServer,
	"internal":     ReasonServer,
}

func reasonFromCodes(codes string, status int) Reason {
	for _, c := range strings.Fields(codes) {
		if r, ok := codeReasons[c]; ok {
			return r
		}
		if r, ok := streamCodeReasons[c]; ok && status == 0 {
			return r
		}
	}
	return ""
}

// hasQuotaCode reports whether err carries an explicit quota or billing code.
func hasQuotaCode(err error) bool {
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		c, _ := apiErr.Code.(string)
		return codeReasons[strings.ToLower(c)] == ReasonQuota || codeReasons[strings.ToLower(apiErr.Type)] == ReasonQuota
	}
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) {
		codes, _ := bodyFields(reqErr.Body)
		return reasonFromCodes(strings.ToLower(codes), 0) == ReasonQuota
	}
	return false
}

// textRules are lower-case phrases of provider messages, checked in order.
var textRules = []struct {
	reason  Reason
	phrases []string
}{
	{ReasonContextLength, []string{"context_length_exceeded", "maximum context length", "context length", "context window", "prompt is too long", "input is too long", "too many input tokens", "reduce the length of the messages"}},
	{ReasonContentFilter, []string{"content_filter", "content management policy", "content policy", "responsibleaipolicyviolation", "safety system"}},
	{ReasonQuota, []string{"insufficient_quota", "exceeded your current quota", "credit balance", "insufficient credits", "insufficient balance", "billing", "payment required", "out of credits", "purchase credits", "any credits"}},
	{ReasonAuth, []string{"invalid api key", "invalid_api_key", "incorrect api key", "api key not valid", "api_key_invalid", "invalid x-api-key", "no auth credentials", "unauthorized", "authentication failed"}},
	{ReasonForbidden, []string{"location is not supported", "not available in your region", "permission denied", "access denied", "forbidden"}},
	{ReasonRateLimit, []string{"rate limit", "rate_limit", "ratelimit", "too many requests", "resource_exhausted", "resource exhausted", "tokens per min", "requests per min"}},
	{ReasonOverloaded, []string{"overloaded", "at capacity", "service unavailable"}},
	{ReasonNotFound, []string{"model_not_found", "model not found", "does not exist", "no such model", "unknown model"}},
	{ReasonTimeout, []string{"timeout", "timed out", "deadline exceeded"}},
	{ReasonNetwork, []string{"connection refused", "connection reset", "broken pipe", "no such host", "tls handshake", "unexpected eof", "goaway", "server closed", "malformed http", "transport connection broken"}},
	{ReasonServer, []string{"internal server error", "bad gateway", "internal error", "server_error", "server error"}},
}

// reasonFromText returns the first reason in allowed (all reasons if only the
// fallback is given) whose phrases occur in msg, or fallback.
func reasonFromText(msg string, fallback Reason, allowed ...Reason) Reason {
	lower := strings.ToLower(msg)
	for _, rule := range textRules {
		if len(allowed) > 0 && !containsReason(allowed, rule.reason) {
			continue
		}
		for _, p := range rule.phrases {
			if strings.Contains(lower, p) {
				return rule.reason
			}
		}
	}
	return fallback
}

func containsReason(rs []Reason, r Reason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// classifyNetwork recognises transport failures by type.
func classifyNetwork(err error) (Verdict, bool) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Verdict{Reason: ReasonTimeout}, true
	}
	if errors.Is(err, syscall.ETIMEDOUT) {
		return Verdict{Reason: ReasonTimeout}, true
	}
	var (
		opErr    *net.OpError
		dnsErr   *net.DNSError
		urlErr   *url.Error
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invErr   x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &opErr), errors.As(err, &dnsErr),
		errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &certErr),
		errors.As(err, &authErr), errors.As(err, &hostErr), errors.As(err, &invErr),
		errors.As(err, &urlErr):
		return Verdict{Reason: ReasonNetwork}, true
	}
	return Verdict{}, false
}

// statusPatterns find a status only where it is anchored: after "status",
// "status code", "HTTP/1.1" or "HTTP", or before its own reason phrase
// (checked in statusFromText).
var statusPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\bstatus(?:[ _]?code)?\s*[:=]?\s*(\d{3})\b`),
	regexp.MustCompile(`(?i)\bHTTP(?:/\d(?:\.\d)?)?\s+(\d{3})\b`),
	regexp.MustCompile(`\b(\d{3}) ([A-Z][A-Za-z-]*(?: [A-Za-z-]+)*)`),
}

// statusFromText returns an anchored HTTP status found in msg, or 0.
func statusFromText(msg string) int {
	for i, re := range statusPatterns {
		for _, m := range re.FindAllStringSubmatch(msg, -1) {
			n, _ := strconv.Atoi(m[1])
			if !validStatus(n) {
				continue
			}
			if i == len(statusPatterns)-1 {
				// "429 Too Many Requests": the phrase must be the status's own.
				text := http.StatusText(n)
				if text == "" || !strings.HasPrefix(m[2], text) {
					continue
				}
			}
			return n
		}
	}
	return 0
}

func validStatus(n int) bool { return n >= 400 && n <= 599 }
