package failover

// OnlyModel restricts a call to the members whose Model is model: the
// others are not tried, and a call that no member may serve returns
// ErrUnavailable with no upstream call. Members without Model (which send
// the request's own model) are left out too. Several OnlyModel options
// allow any of their models.
func OnlyModel(model string) CallOption { return only(memberFilter{kind: byModel, value: model}) }

// OnlyGroup restricts a call to the members whose Group is group (an
// account, a provider or any label the pool's configuration gives its
// members): the others are not tried. Several OnlyGroup options allow any
// of their groups.
func OnlyGroup(group string) CallOption { return only(memberFilter{kind: byGroup, value: group}) }

// OnlyMember pins a call to the member called name: it runs there or not
// at all (ErrUnavailable while that member cools down), with the member's
// cooldowns, limits and retry hints as usual. Use it for calls on
// account-bound resources (files, batches, assistants, stored responses),
// whose IDs mean nothing at another account. Several OnlyMember options
// allow any of their members.
//
// OnlyModel, OnlyGroup and OnlyMember combine: a member must pass each
// kind given.
func OnlyMember(name string) CallOption { return only(memberFilter{kind: byName, value: name}) }

func only(f memberFilter) CallOption {
	return func(c callSettings) callSettings {
		// A fresh slice each time: settings are copied by value.
		c.only = append(c.only[:len(c.only):len(c.only)], f)
		return c
	}
}

type filterKind uint8

const (
	byModel filterKind = iota
	byGroup
	byName
)

// memberFilter is one OnlyModel, OnlyGroup or OnlyMember option.
type memberFilter struct {
	kind  filterKind
	value string
}

// allows reports whether the filters of a call let it try a member: for
// each kind of filter given, one of them must match.
func allows(only []memberFilter, name, model, group string) bool {
	var want, ok [3]bool
	for _, f := range only {
		v := model
		switch f.kind {
		case byGroup:
			v = group
		case byName:
			v = name
		}
		want[f.kind] = true
		ok[f.kind] = ok[f.kind] || f.value == v
	}
	return want == [3]bool{} || (ok[0] || !want[0]) && (ok[1] || !want[1]) && (ok[2] || !want[2])
}

// exclude marks the members a call's filters leave out as tried, so that
// no selection (priority, stickiness, last resort, hedging) picks them and
// ErrUnavailable names none of them.
func exclude[C any](c *config[C], only []memberFilter, tried *bitset) {
	for i := range c.members {
		if m := &c.members[i]; !allows(only, m.Name, m.Model, m.Group) {
			tried.set(i)
		}
	}
}
