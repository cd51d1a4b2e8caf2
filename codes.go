package failover

import "strings"

// codeReasons maps provider error codes, types and statuses (lower case) to
// reasons. Only codes specific enough to decide on their own are listed:
// generic ones such as invalid_request_error leave the decision to the
// status. A code's reason is still refined by the text rules it allows (a
// rate_limit_exceeded "on tokens per day" is a spent period quota).
var codeReasons = map[string]Reason{
	// Money and period quotas.
	"insufficient_quota":           ReasonQuota, // OpenAI
	"billing_hard_limit_reached":   ReasonQuota, // OpenAI
	"billing_not_active":           ReasonQuota, // OpenAI
	"billing_error":                ReasonQuota, // Anthropic
	"insufficient_user_quota":      ReasonQuota, // one-api, new-api
	"insufficient_balance":         ReasonQuota, // DeepSeek, Moonshot
	"payment_required":             ReasonQuota,
	"exceeded_current_quota_error": ReasonQuota, // Moonshot
	"arrearage":                    ReasonQuota, // DashScope: the account is overdue
	"budget_exceeded":              ReasonQuota, // LiteLLM proxy
	// Keys and accounts.
	"invalid_api_key":                      ReasonAuth,      // OpenAI
	"authentication_error":                 ReasonAuth,      // Anthropic
	"invalid_authentication":               ReasonAuth,      // OpenAI
	"api_key_invalid":                      ReasonAuth,      // Gemini
	"unauthenticated":                      ReasonAuth,      // Google
	"invalidapikey":                        ReasonAuth,      // DashScope
	"account_deactivated":                  ReasonAuth,      // OpenAI
	"unsupported_country_region_territory": ReasonForbidden, // OpenAI
	// The member lacks the model or the operation.
	"model_not_found":                ReasonNotFound, // OpenAI
	"not_found_error":                ReasonNotFound, // Anthropic
	"deploymentnotfound":             ReasonNotFound, // Azure
	"operationnotsupported":          ReasonNotFound, // Azure: the deployment's model cannot do this
	"model_decommissioned":           ReasonNotFound, // Groq
	"model_is_deactivated":           ReasonNotFound, // Groq
	"model_not_available":            ReasonNotFound, // Together: a model the key cannot reach (non-serverless)
	"dedicated_endpoint_not_running": ReasonNotFound, // Together: the member's endpoint is stopped
	// The request.
	"context_length_exceeded":      ReasonContextLength, // OpenAI
	"exceed_context_size_error":    ReasonContextLength, // llama.cpp server
	"content_filter":               ReasonContentFilter, // Azure
	"content_policy_violation":     ReasonContentFilter, // OpenAI images, Groq
	"responsibleaipolicyviolation": ReasonContentFilter, // Azure
	"invalid_prompt":               ReasonContentFilter, // OpenAI: the prompt breaks the usage policy
	"datainspectionfailed":         ReasonContentFilter, // DashScope
	// Too fast, or too busy.
	"overloaded_error":                    ReasonOverloaded,    // Anthropic
	"expiredtokenexception":               ReasonAuth,          // AWS
	"unrecognizedclientexception":         ReasonAuth,          // AWS
	"missingauthenticationtokenexception": ReasonAuth,          // AWS API Gateway
	"accessdeniedexception":               ReasonForbidden,     // AWS
	"resourcenotfoundexception":           ReasonNotFound,      // Bedrock
	"modeltimeoutexception":               ReasonTimeout,       // Bedrock
	"organization_restricted":             ReasonAuth,          // Groq: the organization is disabled
	"allocationquota.freetieronly":        ReasonQuota,         // DashScope: free tier spent
	"hooks_failed":                        ReasonContentFilter, // Portkey guardrails
	"characters_too_long":                 ReasonContextLength, // Qianfan
	"tokens_too_long":                     ReasonContextLength, // Qianfan
	"tool_use_failed":                     ReasonBadRequest,    // Groq
	"serviceunavailableexception":         ReasonOverloaded,    // Bedrock
	"modelnotreadyexception":              ReasonOverloaded,    // Bedrock
	"engine_overloaded":                   ReasonOverloaded,
}

// baseCodes give a base reason that the text may still refine, as a status
// does: Google's RESOURCE_EXHAUSTED covers per-minute limits, spent free
// tiers and capacity; Anthropic's rate_limit_error an entitlement.
var baseCodes = map[string]Reason{
	"permission_error":           ReasonForbidden,  // Anthropic
	"permission_denied":          ReasonForbidden,  // Google
	"rate_limit_exceeded":        ReasonRateLimit,  // OpenAI, Groq
	"rate_limit_error":           ReasonRateLimit,  // Anthropic
	"resource_exhausted":         ReasonRateLimit,  // Google
	"throttling":                 ReasonRateLimit,  // DashScope
	"throttlingexception":        ReasonRateLimit,  // Bedrock
	"unavailable":                ReasonOverloaded, // Google
	"deadline_exceeded":          ReasonTimeout,    // Google
	"modelerrorexception":        ReasonServer,     // Bedrock: the model failed on the request
	"engine_overloaded_error":    ReasonOverloaded, // Moonshot
	"token_quota_exceeded":       ReasonRateLimit,  // Cerebras: per minute or per day
	"limitexceededexception":     ReasonRateLimit,  // AWS API Gateway
	"throttling.allocationquota": ReasonRateLimit,  // DashScope: per-minute allocation
	"throttling.ratequota":       ReasonRateLimit,  // DashScope
}

// zhipuCodes are Zhipu's (GLM's) numeric codes. Other providers use small
// numbers too (Mistral's 1000 comes with a 422), so a code counts only with
// a status Zhipu sends (see zhipuStatus).
var zhipuCodes = map[string]struct{ reason Reason }{
	"1000": {ReasonAuth},          // Zhipu: authentication failed
	"1001": {ReasonAuth},          // Zhipu: no authentication header
	"1002": {ReasonAuth},          // Zhipu: invalid token
	"1003": {ReasonAuth},          // Zhipu: token expired
	"1004": {ReasonAuth},          // Zhipu: token verification failed
	"1110": {ReasonAuth},          // Zhipu: account inactive
	"1112": {ReasonAuth},          // Zhipu: account locked
	"1121": {ReasonAuth},          // Zhipu: account locked for a violation
	"1211": {ReasonNotFound},      // Zhipu: model does not exist
	"1221": {ReasonNotFound},      // Zhipu: the API is offline
	"1302": {ReasonRateLimit},     // Zhipu: concurrency too high
	"1303": {ReasonRateLimit},     // Zhipu: request rate too high
	"1113": {ReasonQuota},         // Zhipu: insufficient balance
	"1304": {ReasonQuota},         // Zhipu: today's call limit reached
	"1308": {ReasonQuota},         // Zhipu: usage limit of the plan's period reached
	"1309": {ReasonQuota},         // Zhipu: the coding plan expired
	"1310": {ReasonQuota},         // Zhipu: weekly or monthly limit exhausted
	"1220": {ReasonForbidden},     // Zhipu: no access to this API
	"1261": {ReasonContextLength}, // Zhipu: prompt too long
	"1301": {ReasonContentFilter}, // Zhipu: unsafe or sensitive content
	"1305": {ReasonOverloaded},    // Zhipu: too much traffic
}

// streamCodeReasons decide only when there is no HTTP status: mid-stream
// errors. With a status, the status is more precise (a 503 of type
// server_error is an overload).
var streamCodeReasons = map[string]Reason{
	"server_error": ReasonServer,
	"api_error":    ReasonServer,
	"internal":     ReasonServer,
}

// resourceError marks a 404 of a call that is not a model call: the ID of
// a file, batch, thread, vector store or stored response that does not
// exist in this account. It belongs to the request (bad_request): the
// member is not cooled and no other account is asked for it.
type resourceError struct{ err error }

func (e *resourceError) Error() string { return e.err.Error() }
func (e *resourceError) Unwrap() error { return e.err }

// accountBound reports whether path names a resource of one account by
// its ID (OpenAI's files, batches, assistants, threads, vector stores,
// fine-tuning jobs, uploads, containers, evals, and stored responses).
func accountBound(path string) bool {
	for seg := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		switch seg {
		case "files", "batches", "assistants", "threads", "vector_stores", "fine_tuning", "fine-tunes", "uploads", "containers", "evals":
			return true
		}
	}
	i := strings.Index(path, "/responses/")
	return i >= 0 && len(path) > i+len("/responses/")
}

// memberConfigError marks a failure that belongs to the member's own
// configuration rather than the caller's request, such as a Model the member
// sets that go-openai's pre-send check refuses for this method: the member
// cannot serve the call (not_found), another may.
type memberConfigError struct{ err error }

func (e *memberConfigError) Error() string { return e.err.Error() }
func (e *memberConfigError) Unwrap() error { return e.err }
