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
	// Reset marks a quota whose RetryAfter is the wait until the
	// provider's reset of a spent period quota (per day, week or month, or
	// a reset the provider wrote out): the member's first quota window is
	// then exactly RetryAfter, not the quota lane's hour (see
	// Cooldowns.Quota).
	Reset bool
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
	v, f := classifyReason(err)
	return periodVerdict(v, f, hintOf(err, f.body, now), now)
}

// errInfo is what an error says about itself: the HTTP status, the
// structured codes (lower case, space separated), the message and the raw
// body when one is known.
type errInfo struct {
	status int
	codes  string
	msg    string
	body   []byte
}

func classifyReason(err error) (Verdict, errInfo) {
	f := errInfo{msg: head(err.Error())}
	switch {
	case errors.Is(err, context.Canceled):
		return Verdict{Reason: ReasonCanceled}, f
	case errors.Is(err, context.DeadlineExceeded):
		return Verdict{Reason: ReasonTimeout}, f
	}
	var cfg *memberConfigError
	if errors.As(err, &cfg) {
		return Verdict{Reason: ReasonNotFound}, f
	}
	var res *resourceError
	if errors.As(err, &res) {
		return Verdict{Reason: ReasonBadRequest, Status: http.StatusNotFound}, f
	}
	for _, re := range requestErrors {
		if errors.Is(err, re) {
			return Verdict{Reason: ReasonBadRequest}, f
		}
	}
	if errors.Is(err, openai.ErrTooManyEmptyStreamMessages) || errors.Is(err, errSSELine) {
		return Verdict{Reason: ReasonServer}, f
	}
	if sf, ok := structured(err); ok {
		return decide(sf), sf
	}
	if v, ok := classifyNetwork(err); ok {
		return v, f
	}
	f.codes = botoCode(f.msg)
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) && validStatus(sc.StatusCode()) {
		f.status = sc.StatusCode()
	} else {
		f.status = statusFromText(f.msg)
	}
	return decide(f), f
}

// structured gathers the status, codes, message and body of a provider
// error: go-openai's *RequestError (it has the raw body even when go-openai
// half-parsed it into an empty APIError) and *APIError, Transport's
// *HTTPError, and any error with a Body() []byte method (the go-openai glue
// records the error body that go-openai itself drops).
func structured(err error) (errInfo, bool) {
	var f errInfo
	var (
		reqErr  *openai.RequestError
		httpErr *HTTPError
		apiErr  *openai.APIError
		bodied  interface{ Body() []byte }
	)
	found := false
	if errors.As(err, &reqErr) {
		f.status, f.body, found = reqErr.HTTPStatusCode, reqErr.Body, true
	}
	if errors.As(err, &httpErr) {
		f.status, f.body, found = httpErr.StatusCode, httpErr.Body, true
		if httpErr.event {
			f.status = 0 // the 200 stream's error event: its own codes decide, as on go-openai's path
		}
	}
	if errors.As(err, &apiErr) {
		if f.status == 0 {
			f.status = apiErr.HTTPStatusCode
		}
		f.codes, f.msg = apiCodes(apiErr), head(apiErr.Message)
		if f.status == 0 {
			// Azure sends codes such as "429"; OpenRouter numeric codes.
			if n, err := strconv.Atoi(strings.Fields(f.codes + " x")[0]); err == nil && validStatus(n) {
				f.status = n
			}
		}
		found = true
	}
	var hc interface{ Header() http.Header }
	if errors.As(err, &hc) {
		f.codes += " " + amznErrorType(hc.Header())
	}
	if httpErr != nil {
		f.codes += " " + amznErrorType(httpErr.Header)
	}
	if f.body == nil && errors.As(err, &bodied) {
		f.body = bodied.Body()
	}
	if len(f.body) > 0 {
		codes, msg := bodyFields(f.body)
		f.codes = strings.TrimSpace(f.codes + " " + codes)
		if f.msg == "" {
			f.msg = head(msg)
		}
		if f.msg == "" {
			f.msg = head(string(f.body))
		}
	}
	if httpErr != nil && httpErr.event {
		// A stream's error event carries its status as a numeric code
		// (OpenRouter, LiteLLM, Gemini), as go-openai's APIError does.
		for _, c := range strings.Fields(f.codes) {
			if n, err := strconv.Atoi(c); err == nil && validStatus(n) {
				f.status = n
				break
			}
		}
	}
	f.codes = strings.ToLower(f.codes)
	return f, found
}

// zhipuStatus reports whether Zhipu sends its numeric codes with status:
// 400, 401, 403, 429, 500, or mid-stream.
func zhipuStatus(status int) bool {
	switch status {
	case 0, 400, 401, 403, 429, 500:
		return true
	}
	return false
}

// botoCodeText finds the AWS error code in boto3's text of a ClientError:
// "An error occurred (ThrottlingException) when calling the Converse …".
var botoCodeText = regexp.MustCompile(`An error occurred \((\w+)\) when calling`)

// botoCode is the lower-case AWS error code in msg, or "".
func botoCode(msg string) string {
	if m := botoCodeText.FindStringSubmatch(msg); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// amznErrorType is the exception name AWS services send in
// x-amzn-ErrorType ("ThrottlingException:http://internal.amazon.com/…").
func amznErrorType(h http.Header) string {
	t, _, _ := strings.Cut(h.Get("X-Amzn-Errortype"), ":")
	return t
}

// apiCodes returns the code, type and inner code of go-openai's parsed
// error, space separated.
func apiCodes(e *openai.APIError) string {
	code := ""
	switch c := e.Code.(type) {
	case string:
		code = c
	case int:
		code = strconv.Itoa(c)
	case float64:
		code = strconv.FormatFloat(c, 'f', -1, 64)
	}
	codes := code + " " + e.Type
	if e.InnerError != nil {
		codes += " " + e.InnerError.Code
	}
	return codes
}

// requestErrors are go-openai's checks of a request before it is sent: the
// request is at fault, so no other member is tried. A model the check
// refuses is the member's configuration when the member set it (see
// memberConfigError).
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
		Error  json.RawMessage `json:"error"`  // an object, or a message string (xAI)
		Detail any             `json:"detail"` // FastAPI servers: a string or a list
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
	if f.Message == "" {
		if d, ok := w.Detail.(string); ok {
			f.Message = d
		}
	}
	if f.Code != nil {
		codes = fmt.Sprint(f.Code)
	}
	codes += " " + f.Type + " " + f.Status
	for _, d := range f.Details {
		codes += " " + d.Reason
	}
	return codes, f.Message
}

// decide gives the verdict of a failure: a base reason from its codes, or
// else its status, refined by the text rules the base allows.
func decide(f errInfo) Verdict {
	base, decisive := reasonFromCodes(f.codes, f.status)
	if decisive {
		return Verdict{Reason: base, Status: f.status}
	}
	if base == "" {
		base = statusReason(f.status)
	}
	return Verdict{Reason: refine(base, oneLine(f.msg)), Status: f.status}
}

// statusReason is the base reason of an HTTP status (0: unknown).
func statusReason(status int) Reason {
	switch status {
	case http.StatusPaymentRequired:
		return ReasonQuota
	case http.StatusUnauthorized, http.StatusProxyAuthRequired:
		return ReasonAuth
	case http.StatusForbidden:
		return ReasonForbidden
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusRequestTimeout:
		return ReasonTimeout
	case http.StatusTooManyRequests:
		return ReasonRateLimit
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusPreconditionFailed:
		return ReasonBadRequest
	case http.StatusServiceUnavailable, 529, 498: // 529 Anthropic, 498 Groq flex tier capacity
		return ReasonOverloaded
	case http.StatusFailedDependency, 499: // gateways: the upstream failed or went away
		return ReasonServer
	}
	if status >= 500 && status <= 599 {
		return ReasonServer
	}
	return ReasonUnknown
}

// reasonFromCodes returns the reason of the first decisive code in codes,
// else the base reason of the first code that gives one (ok false), else "".
func reasonFromCodes(codes string, status int) (r Reason, decisive bool) {
	fields := strings.Fields(codes)
	for _, c := range fields {
		if r, ok := codeReasons[c]; ok {
			return r, true
		}
		if z, ok := zhipuCodes[c]; ok && zhipuStatus(status) {
			return z.reason, true
		}
	}
	for _, c := range fields {
		if r, ok := baseCodes[c]; ok {
			return r, false
		}
		if r, ok := streamCodeReasons[c]; ok && status == 0 {
			return r, false
		}
	}
	return "", false
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
	regexp.MustCompile(`^(\d{3}) status code\b`),          // openai-node's "400 status code (no body)"
	regexp.MustCompile(`^(\d{3}) [A-Z_]{3,}\. `),          // google-genai's "400 INVALID_ARGUMENT. {…}"
	regexp.MustCompile(`(?i)\berror code:\s*(\d{3})\s+-`), // openai-python's and anthropic-python's "Error code: 500 - {…}"
	regexp.MustCompile(`(?i)\bHTTP code (\d{3})\b`),       // openai-python v0's "HTTP code 522 from API"
	regexp.MustCompile(`^([45]\d\d) (?:[A-Z][a-z]|\{)`),   // anthropic-sdk-typescript's "503 Too many connections…", "529 {…}"
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
