package failover

import (
	"regexp"
	"strings"
)

// textRule is one line of the message-text table: the reason, the
// providers whose wording it matches, and the pattern.
type textRule struct {
	reason Reason
	from   string
	re     *regexp.Regexp
}

// textRules are checked in order, after status, code and type have given a
// base reason; refinements says which of them may change that base. Each
// pattern matches whole words, case-insensitively: "rate_limit" inside the
// identifier "custom_rate_limit_key" is not a rate limit. README lists the
// table (TestREADMETextRules keeps it in step).
var textRules = []textRule{
	// A limit per minute, before the context rules: "input token limit
	// exceeded for this minute" is a rate limit (a 400 skips this rule).
	rule(ReasonRateLimit, "Groq, OpenAI, Anthropic, openclaw", `(?:tokens|requests) per min(?:ute)?|for this minute|per-model limit|\((?:TPM|RPM)\)`),
	// The request does not fit the model.
	rule(ReasonContextLength, "OpenAI, vLLM, Mistral, xAI", `context_length_exceeded|maximum (?:context|prompt) length|context length (?:is |of )?(?:exceeded|too long)|exceeds? (?:the )?(?:model'?s? )?(?:max(?:imum)? )?context(?: length| window| size| limit)?|context (?:is )?too long|is too long to fit into the model|(?:longer|greater) than the (?:model'?s? )?(?:maximum )?context length|context overflow`),
	rule(ReasonContextLength, "Anthropic, Cohere, Ollama, llama.cpp, LM Studio", `context (?:window|limit) (?:exceeded|of \d+|reached|(?:is )?full)|context_window_exceeded|exceed(?:s|ed)? (?:your |the )?context limit|context size (?:has been )?exceeded|prompt is too long|prompt (?:is )?too large|input is too long(?: for (?:the |this )?(?:requested )?model|[.!]?$)|too many input tokens|reduce the length of the messages|input length exceeds|context length of only \d+ tokens|n_keep \(\d+\) >= n_ctx`),
	rule(ReasonContextLength, "Gemini, Vertex, Bedrock, Perplexity", `input token count(?: \(?\d+\)?| is \d+)? (?:exceeds|but (?:the )?model only supports)|exceeds the maximum number of (?:input )?tokens|exceeds the (?:model'?s? )?max(?:imum)? limit of \d+|prompt token count of \d+ exceeds the limit|input tokens? exceeds? (?:the )?(?:model'?s? |configured )?(?:limit|maximum)|exceeds? (?:the )?token limit|too many total text bytes|expected a string with maximum length|exceeds? the max(?:imum)? token (?:limit|count)|token count exceed(?:s|ed)? the maximum|max(?:imum)? token (?:limit|count) reached|token limit exceeded|too many (?:input )?tokens(?: in(?: the)? (?:request|input|prompt))?`),
	rule(ReasonContextLength, "llama.cpp, vLLM, TGI, SiliconFlow", `input is too large to process|increase (?:the )?context length|exceed_context_size_error|exceeds (?:the )?available context size|longer than the maximum model length|inputs.{0,3} tokens \+ .{0,3}max_new_tokens.{0,3} must be <=|must have less than \d+ tokens|must be less than max_seq_len`),
	rule(ReasonContextLength, "Kimi, DashScope, Qianfan", `exceeded model token limit|model token limit|model max length exceeded|(?:input )?token length too long|range of input length should be|reduce your message length|please reduce the length|max input characters|maximum input length|reduce your input|reduce (?:the )?input size`),
	ruleCJK(ReasonContextLength, "Roo Code's list: Chinese, Japanese, Korean", `输入超长|请求太长|上下文.{0,4}(?:超出|超过|太长|过长)|(?:超出|超过)(?:上下文|长度)限制|令牌超出限制|コンテキストが長すぎ|入力が超過|(?:컨텍스트|입력).{0,4}(?:너무\s*길|초과)`),
	// The content is refused.
	rule(ReasonContentFilter, "OpenAI, Azure, Anthropic, xAI", `content_filter(?:_policy)?|content management(?: policy)?|response was filtered|content[ _]policy(?:_violation)?|content filtering(?: policy)?|responsibleaipolicyviolation|safety system|usage polic(?:y|ies)|invalid_prompt|violates (?:our )?(?:usage |content )?(?:policy|policies|guidelines)`),
	rule(ReasonContentFilter, "OpenRouter, DashScope, Gemini, DeepSeek", `content exists risk|requires moderation|(?:was|been|is) flagged|flagged for|datainspectionfailed|data_inspection_failed|inappropriate content|prohibited content|blocked (?:by|due to) safety`),
	ruleCJK(ReasonContentFilter, "Zhipu, DashScope", `敏感内容|不安全或敏感|内容安全`),
	// Where the member may not be used, before "billing": "free tier is not
	// available in your country. Please enable billing".
	rule(ReasonForbidden, "Gemini, OpenAI", `location is not supported|not available in your (?:region|country|location)|unsupported_country(?:_region_territory)?`),
	// Money or a period's allowance is spent.
	rule(ReasonQuota, "OpenAI, Gemini, Moonshot, OpenRouter", `insufficient[ _](?:user_)?quota|exceeded (?:your|the) (?:current )?quota|quota (?:limit )?(?:exceeded|exhausted|reached|has been exceeded)|quota_exceeded|quota is not enough|no quota|exceeded_current_quota_error|key limit exceeded|(?:exceeded|exhausted) your (?:[a-z]+ ){0,3}(?:quota|allowance)`),
	rule(ReasonQuota, "Anthropic, OpenRouter, DeepSeek, xAI, DashScope", `credit balance|insufficient (?:credits?|balance|funds)|insufficient_balance|(?:plan and|check your|update your|enable) billing|billing (?:details|hard limit|is not active|issue)|payment required|out of credits|purchase (?:more )?credits|any credits|more credits|arrearage|extra usage is required|payment (?:is )?past due|update your payment method|spend(?:ing)? limit`),
	rule(ReasonQuota, "LiteLLM, Anthropic, Ollama, Zhipu, Cohere", `budget (?:has been )?exceeded|exceeded (?:the |your )?budget|reached (?:your|the) (?:[a-z]+ ){0,3}usage limits?|usage limit reached|(?:daily|weekly|monthly) (?:free )?(?:usage |allocation )?(?:limit|quota|allocation)|(?:tokens|requests|calls) (?:per|/) ?(?:day|month)|per[- ](?:day|week|month) (?:limit|quota)`),
	ruleCJK(ReasonQuota, "Zhipu, Moonshot", `余额不足|已欠费|欠费|额度已用完|资源包|使用上限`),
	// The key or account is refused.
	rule(ReasonAuth, "OpenAI, Anthropic, Gemini, xAI, Bedrock", `invalid[ _]api[ _]key|incorrect api key|api key not valid|api_key_invalid|invalid x-api-key|no auth credentials|unauthorized|authentication (?:failed|fails|error)|invalid (?:authentication|bearer token|access token|api token|auth token)|invalidapikey|invalid subscription key|api key (?:is )?invalid|access was terminated|consumer .{0,60}has been suspended|authorization failed|authentication is (?:currently )?not allowed|reported as leaked|security token included in the request is (?:invalid|expired)`),
	rule(ReasonAuth, "Groq, OpenRouter, Mistral, LiteLLM", `(?:api )?key (?:has been |was |is )?(?:revoked|disabled|deleted|expired)|(?:account|organization|user) (?:has been |was |is )?(?:deactivated|disabled|suspended|banned|restricted)|token (?:has )?expired|missing (?:api key|authentication)|api key (?:is )?(?:missing|required)|invalid proxy server token`),
	ruleCJK(ReasonAuth, "Zhipu", `身份验证失败|令牌已过期|api key 无效|无效的api`),
	// The member may not serve this request.
	rule(ReasonForbidden, "Gemini, OpenAI, Anthropic, LiteLLM, Qianfan", `permission denied|access denied|insufficient permissions|(?:do not|don't) have access|is not authorized to perform|does not have (?:access|permission)|not allowed to access|no permission`),
	// Too fast: a short window.
	rule(ReasonRateLimit, "OpenAI, Anthropic, Groq", `rate[ _-]?limit(?:s|ed|ing|_exceeded|_error|_reached)?|too[ _]many[ _]requests|resource_?exhausted|resource exhausted|request limit (?:exceeded|reached)`),
	rule(ReasonRateLimit, "Bedrock, Mistral, Together, Zhipu", `throttl(?:ed|ing)(?:exception)?|too many (?:concurrent|parallel) requests|concurren(?:cy|t request) limit|concurrency (?:has been )?(?:exceeded|reached)|maximum concurrency|high concurrency`),
	ruleCJK(ReasonRateLimit, "Zhipu, Moonshot, DashScope", `并发数过高|请求过于频繁|速率限制|限流`),
	// The provider cannot serve now.
	rule(ReasonOverloaded, "Anthropic, Groq, Gemini, DeepSeek, Vertex, xAI", `overloaded|at capacity|over capacity|out of capacity|capacity (?:exceeded|reached)|service unavailable|service is (?:currently |temporarily )?unavailable|high (?:demand|load|traffic)|server (?:is )?busy|temporarily unavailable`),
	rule(ReasonOverloaded, "TGI, Bedrock, Ollama, Envoy, Cloudflare", `(?:model|server) is (?:not ready|loading|currently loading|starting)|is currently loading|modelnotready|no healthy upstream|reset reason: overflow|no more data centers`),
	ruleCJK(ReasonOverloaded, "Zhipu", `访问量过大|服务繁忙|稍后重试`),
	// The member does not have the model or the operation.
	rule(ReasonNotFound, "OpenAI, Groq, DeepSeek, Mistral, OpenRouter, LiteLLM", "model_not_found|model not found|model .{0,80}does not exist|model (?:does )?not exists?|no such model|unknown model|invalid model(?: name| id| identifier|:| '| \\x22)|not a valid model(?: id)?|(?:has been|was) decommissioned|model_decommissioned|model_is_deactivated"),
	rule(ReasonNotFound, "Azure, OpenRouter, Bedrock, Ollama, go-openai", "no endpoints found|operationnotsupported|deploymentnotfound|not supported (?:with|by|on|for) this (?:method|endpoint|api|deployment|operation)|on-demand throughput isn.t supported|does not support (?:tools|function calling|images|vision)"),
	rule(ReasonNotFound, "Together, vLLM, OpenAI, Vertex", `unable to access (?:non-serverless )?model|dedicated endpoint .{0,80}is not running|tool choice requires --enable-auto-tool-choice|organization must be verified to (?:stream|use|generate with) (?:this|the) model|is not allowed to use publisher model`),
	// The provider's own failure behind a gateway's 400.
	rule(ReasonServer, "Cloudflare AI Gateway, LM Studio", `failed to get response from provider|failed to load model`),
	// The exception class another SDK put in the text (litellm, openai-python), after the
	// phrases: "litellm.BadRequestError: … prompt is too long" is a context overflow.
	rule(ReasonContextLength, "litellm", `contextwindowexceedederror`),
	rule(ReasonContentFilter, "litellm", `contentpolicyviolationerror`),
	rule(ReasonAuth, "litellm, openai-python", `authenticationerror`),
	rule(ReasonForbidden, "litellm, openai-python", `permissiondeniederror`),
	rule(ReasonNotFound, "litellm, openai-python", `notfounderror`),
	rule(ReasonRateLimit, "litellm, openai-python", `ratelimiterror`),
	rule(ReasonOverloaded, "litellm, Bedrock", `serviceunavailableerror|serviceunavailableexception`),
	rule(ReasonBadRequest, "litellm, openai-python", `badrequesterror|unprocessableentityerror`),
	rule(ReasonNetwork, "litellm, openai-python, anthropic-sdk-python, httpx", `apiconnectionerror|connecterror`),
	// The wire, when only text is left.
	rule(ReasonTimeout, "Go, Node, Python SDKs", `timeout|timed out|deadline exceeded|etimedout`),
	rule(ReasonNetwork, "Go, Node, Python, Bun SDKs", `connection (?:refused|reset|error|closed|aborted|failed)|socket connection was closed|econnrefused|econnreset|econnaborted|enotfound|eai_again|epipe|socket hang up|broken pipe|no such host|getaddrinfo|dial tcp|tls:|tls handshake|x509:|unexpected eof|goaway|server closed|malformed http|transport connection broken|fetch failed|failed to fetch|unable to connect|socket disconnected|secure tls connection|typo in the url or port|stream error: stream id|network (?:error|is unreachable)|failed to connect to all addresses|tcp handshake|unexpected end of json input|failed to establish a new connection|actively refused|no connection could be made|connection attempts failed|cannot connect to host|connect call failed`),
	rule(ReasonServer, "OpenAI, Anthropic, Gemini", `internal server error|bad gateway|internal error|server_error|server error|api_error|upstream connect error|origin (?:is )?down|web server is down`),
}

// refinements says which text reasons may replace a base reason taken from
// the status or a code: a 400 may turn out to be a context overflow, a 429
// a spent quota, but a 401 never becomes a rate limit. A base reason that
// is not listed keeps its verdict; unknown (no status) lets every rule in.
var refinements = map[Reason][]Reason{
	ReasonBadRequest: {ReasonContextLength, ReasonContentFilter, ReasonQuota, ReasonAuth, ReasonForbidden, ReasonNotFound, ReasonOverloaded, ReasonServer},
	ReasonForbidden:  {ReasonContentFilter, ReasonQuota, ReasonAuth, ReasonRateLimit},
	ReasonRateLimit:  {ReasonQuota, ReasonOverloaded},
	ReasonOverloaded: {ReasonQuota},
	ReasonServer:     {ReasonContextLength, ReasonContentFilter, ReasonQuota},
	ReasonAuth:       {ReasonQuota, ReasonForbidden},
	ReasonUnknown:    nil, // every rule
}

// boundary is what may stand beside a matched phrase: not a letter, digit
// or underscore, or a word boundary (after a phrase that ends in a quote).
const boundary = `[^a-zA-Z0-9_]|\b`

func rule(r Reason, from, pattern string) textRule {
	return textRule{r, from, regexp.MustCompile(`(?i)(?:^|` + boundary + `)(?:` + pattern + `)(?:$|` + boundary + `)`)}
}

// ruleCJK is a rule for Chinese text, which has no spaces between words.
func ruleCJK(r Reason, from, pattern string) textRule {
	return textRule{r, from, regexp.MustCompile(`(?i)` + pattern)}
}

// refine returns the reason of the first text rule that msg matches among
// the rules of base and of the reasons base allows, or base.
func refine(base Reason, msg string) Reason {
	allowed, ok := refinements[base]
	if !ok || msg == "" {
		return base
	}
	for _, r := range textRules {
		if base != ReasonUnknown && r.reason != base && !containsReason(allowed, r.reason) {
			continue
		}
		if r.re.MatchString(msg) {
			return r.reason
		}
	}
	return base
}

func containsReason(rs []Reason, r Reason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// maxRuleText bounds how much of a message the text rules read: provider
// messages are short, and the rules must not cost seconds on a huge one.
const maxRuleText = 16 << 10

// oneLine bounds a message and flattens it for matching: the patterns do
// not span lines.
func oneLine(s string) string { return strings.ReplaceAll(head(s), "\n", " ") }

// head is the first maxRuleText bytes of s.
func head(s string) string { return s[:min(len(s), maxRuleText)] }
