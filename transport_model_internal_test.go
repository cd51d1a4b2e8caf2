package failover

import "testing"

func TestWithPathModel(t *testing.T) {
	for _, tc := range []struct{ path, model, want string }{
		{"/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:generateContent"},
		{"/v1beta/models/gemini-2.5-flash:streamGenerateContent", "models/gemini-2.0-flash", "/v1beta/models/gemini-2.0-flash:streamGenerateContent"},
		{"/v1/chat/completions", "gpt-4o", "/v1/chat/completions"},
		{"/v1/models/gpt-4o", "gpt-5", "/v1/models/gpt-4o"}, // GET /models/{id}: no method, not Gemini's form
		{"/v1beta/models/a/b:x", "m", "/v1beta/models/a/b:x"},
	} {
		if got := withPathModel(tc.path, tc.model); got != tc.want {
			t.Errorf("withPathModel(%q, %q) = %q, want %q", tc.path, tc.model, got, tc.want)
		}
	}
}
