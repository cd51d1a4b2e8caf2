// Package redact removes API keys and other credentials from text that may
// reach errors, logs, events or status.
package redact

import "regexp"

// Mask replaces every secret.
const Mask = "[REDACTED]"

// rules are the shapes of credentials, each with the replacement that keeps
// the text around the secret readable.
var rules = []struct {
	re   *regexp.Regexp
	repl string
}{
	// The user and password of a URL ("redis://:pw@host", "https://u:p@proxy").
	{regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@`), "${1}" + Mask + "@"},
	// Query parameters and header or JSON fields that carry a credential.
	{regexp.MustCompile(`(?i)([?&;](?:key|api[_-]?key|access[_-]?token|token|auth|signature|sig)=)[^&\s"'<>]+`), "${1}" + Mask},
	{regexp.MustCompile(`(?i)((?:x-api-key|x-goog-api-key|api[_-]?key|authorization|access[_-]?token|secret)\\?["']?\s*[:=]\s*\\?["']?)(?:bearer\s+|basic\s+)?[^"'\s,;}&\\]+`), "${1}" + Mask},
	{regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}`), "${1} " + Mask},
	// Key shapes: OpenAI, Anthropic and OpenRouter (sk-…), Google (AIza…),
	// Groq (gsk_…), xAI (xai-…), Perplexity (pplx-…), Fireworks (fw_…),
	// NVIDIA (nvapi-…), Hugging Face (hf_…), Replicate (r8_…).
	{regexp.MustCompile(`\b(?:sk|rk|pk)-[A-Za-z0-9_-]{8,}`), Mask},
	{regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{20,}`), Mask},
	{regexp.MustCompile(`\b(?:gsk|xai|pplx|fw|nvapi|hf|r8)[-_][A-Za-z0-9_-]{10,}`), Mask},
}

// String returns s with every credential replaced by [Mask].
func String(s string) string {
	for _, r := range rules {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}

// Truncate shortens s to at most n bytes, on a rune boundary, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
