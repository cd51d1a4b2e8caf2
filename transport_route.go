package failover

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// routePath joins a member's base path and a request's path, both escaped:
// the request's path is kept, but for the member's base path and a version
// segment the two share. A version segment ("v1", "v1beta", "v2alpha1", see
// isVersionSegment) is a whole path segment, never a string prefix:
//
//   - a request path that already starts with every segment of the base
//     path is kept as is ("/v1beta" + "/v1beta/models/x" → "/v1beta/models/x",
//     "/openai" + "/openai/deployments/d/chat/completions" unchanged);
//   - otherwise, a request path that starts with a version segment loses it
//     when the base path carries a version of its own, anywhere in it: the
//     member's version wins ("/api/v1" + "/v1/chat/completions" →
//     "/api/v1/chat/completions", "/v1beta/openai" + "/v1/chat/completions"
//     → "/v1beta/openai/chat/completions");
//   - otherwise the request path follows the base path ("" +
//     "/v1beta/models/x" → "/v1beta/models/x", "/openai" +
//     "/v1/chat/completions" → "/openai/v1/chat/completions").
func routePath(base, path string) string {
	base = strings.TrimSuffix(base, "/")
	if path == "" {
		path = "/"
	} else if path[0] != '/' {
		path = "/" + path
	}
	if base == "" || hasSegmentPrefix(path, base) {
		return path
	}
	// The member's version wins; an Azure deployment's base has none
	// (its api-version is a query parameter) and takes no /v1 either.
	if first, rest := firstSegment(path); isVersionSegment(first) && (hasVersionSegment(base) || strings.Contains(base, "/deployments/")) {
		return base + rest
	}
	return base + path
}

// hasSegmentPrefix reports whether path starts with every segment of base:
// "/v1beta/models" has "/v1beta", "/v1betax" does not.
func hasSegmentPrefix(path, base string) bool {
	rest, ok := strings.CutPrefix(path, base)
	return ok && (rest == "" || rest[0] == '/')
}

// firstSegment splits "/v1/chat" into "v1" and "/chat".
func firstSegment(path string) (first, rest string) {
	p := strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// hasVersionSegment reports whether one of base's segments is a version.
func hasVersionSegment(base string) bool {
	for seg := range strings.SplitSeq(base, "/") {
		if isVersionSegment(seg) {
			return true
		}
	}
	return false
}

// isVersionSegment reports whether seg names an API version: "v", digits,
// then any run of "alpha", "beta" or "p" each with optional digits: v1, v2,
// v1beta, v1alpha, v1beta1, v1p1beta1.
func isVersionSegment(seg string) bool {
	rest, ok := strings.CutPrefix(seg, "v")
	if !ok {
		return false
	}
	rest, ok = cutDigits(rest)
	if !ok {
		return false
	}
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, "alpha"):
			rest = rest[len("alpha"):]
		case strings.HasPrefix(rest, "beta"):
			rest = rest[len("beta"):]
		case rest[0] == 'p':
			rest = rest[1:]
		default:
			return false
		}
		rest, _ = cutDigits(rest)
	}
	return true
}

// cutDigits removes leading ASCII digits and reports whether there were any.
func cutDigits(s string) (string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[i:], i > 0
}

// route points out at target: its scheme and host, the path routePath
// joins, and the query of the request with the base URL's parameters
// (such as Azure's api-version) added where the request has none of its
// own.
func route(out *url.URL, target *url.URL, q url.Values) {
	out.Scheme, out.Host = target.Scheme, target.Host
	escaped := routePath(target.EscapedPath(), out.EscapedPath())
	if p, err := url.PathUnescape(escaped); err == nil {
		out.Path, out.RawPath = p, ""
		if out.EscapedPath() != escaped { // keep an encoding the plain path loses
			out.RawPath = escaped
		}
	} else {
		out.Path, out.RawPath = routePath(target.Path, out.Path), ""
	}
	if target.RawQuery == "" {
		return
	}
	for k, vs := range target.Query() {
		if _, ok := q[k]; !ok {
			q[k] = vs
		}
	}
}

// withPathModel replaces the model of a Gemini-style path, the segment
// after "models/" up to its ":method" (/v1beta/models/gemini-2.5-flash:
// generateContent), with model: Gemini names the model in the path, not the
// body. Other paths are returned as they are.
func withPathModel(path, model string) string {
	i := strings.Index(path, "/models/")
	if i < 0 || model == "" {
		return path
	}
	start := i + len("/models/")
	end := strings.IndexByte(path[start:], ':')
	if end <= 0 || strings.Contains(path[start:start+end], "/") {
		return path
	}
	return path[:start] + strings.TrimPrefix(model, "models/") + path[start+end:]
}

// pathModel returns the model of a Gemini-style path (see withPathModel),
// or "".
func pathModel(path string) string {
	i := strings.Index(path, "/models/")
	if i < 0 {
		return ""
	}
	start := i + len("/models/")
	end := strings.IndexByte(path[start:], ':')
	if end <= 0 || strings.Contains(path[start:start+end], "/") {
		return ""
	}
	return path[start : start+end]
}

// maxModelScan bounds how much of a JSON request body Transport reads to
// find its top-level "model" (SDKs put it after the conversation too).
const maxModelScan = 4 << 20

// requestModel returns the model a request asks for: a Gemini path's, or
// the top-level "model" of its JSON body, in its first maxModelScan
// bytes, which body yields; "" if it names none. It reads the body only
// up to the model, and not at all unless it is JSON (a multipart upload
// names its model in a form field, which is not read).
func requestModel(path, contentType string, body func() (io.ReadCloser, []byte, error), raw []byte) string {
	if m := pathModel(path); m != "" {
		return m
	}
	if contentType != "" && !strings.Contains(contentType, "json") {
		return ""
	}
	s := usageScan{topModel: true}
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	} else {
		rc, _, err := body()
		if err != nil || rc == nil || rc == http.NoBody {
			return ""
		}
		defer rc.Close()
		rd = rc
	}
	buf := make([]byte, 32<<10)
	for read := 0; s.modelN == 0 && read < maxModelScan; {
		n, err := rd.Read(buf)
		if read == 0 && n > 0 && firstNonSpace(buf[:n]) != '{' {
			return "" // not a JSON object
		}
		s.feed(buf[:n])
		read += n
		if err != nil {
			break
		}
	}
	return s.modelName()
}

// firstNonSpace returns the first byte of b that is not JSON whitespace,
// or 0.
func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}
