package failover

import (
	"strings"
	"time"
)

// TextRuleTable renders the text rules as the README's Markdown table.
func TextRuleTable() string {
	var b strings.Builder
	b.WriteString("| # | reason | from | matches (whole words, any case) |\n|---|---|---|---|\n")
	for i, r := range textRules {
		pattern := r.re.String()
		pattern = strings.TrimPrefix(pattern, "(?i)(?:^|"+boundary+")(?:")
		pattern = strings.TrimSuffix(pattern, ")(?:$|"+boundary+")")
		pattern = strings.TrimPrefix(pattern, "(?i)")
		pattern = strings.ReplaceAll(pattern, "|", `\|`)
		b.WriteString("| " + itoa(i+1) + " | `" + string(r.reason) + "` | " + r.from + " | `" + pattern + "` |\n")
	}
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// ClassifyAt is Classify at the time now.
func ClassifyAt(err error, now time.Time) Verdict { return classifyAt(err, now) }
