package core

// The subscription table ("sublist") behind Subscribe, Unsubscribe and
// Signal.
//
// # Layout
//
//   - Every distinct pattern has one *entry holding its plain subscribers
//     (a set) and its queue groups. entry.mu guards both.
//   - Literal patterns (no '*' or '>' token) live in exact, an xsync map
//     keyed by the full channel, so a publish finds them with one
//     lock-free Load.
//   - Wildcard patterns live in a token trie rooted at root: per node a
//     map of literal tokens to child nodes, a '*' child, the entry of the
//     pattern that ends at the node (here) and the entry of the pattern
//     that continues with a final '>' (tail). The trie's shape and the
//     here/tail pointers are guarded by sublist.mu.
//   - A queue group keeps its members as an immutable slice behind an
//     atomic pointer (copy-on-write: joins and leaves build a new slice
//     under entry.mu) and its round-robin counter as an atomic, so a
//     publisher picks a member after releasing every lock.
//   - cache maps a channel to the wildcard entries it matches (possibly
//     none). It is a fixed table of cacheSlots atomic pointers to
//     immutable lines, probed at two hash positions; a line is valid
//     only while its gen equals sublist.gen, which writers bump (under
//     sublist.mu) whenever a wildcard entry is created or removed. Changes
//     of membership of an existing entry need no invalidation because a
//     line points at entries, not at subscribers.
//
// # What locks
//
//   - Signal with no match: exact.Load (lock-free), an atomic count of
//     wildcard entries and, when there are any, a cache probe (atomic
//     loads). No mutex, no allocation.
//   - Signal with matches: entry.mu.RLock of each matching entry, held only
//     while its subscribers and group pointers are copied into a pooled
//     scratch (no allocation once the pool is warm). On a cache miss,
//     sublist.mu.RLock for the trie walk and two allocations: the new
//     cache line and its copy of the channel. Deliver runs with no lock
//     held; then Evict runs for every slow consumer found, also unlocked.
//   - Subscribe/Unsubscribe of a literal pattern: one xsync bucket lock
//     (LoadOrCompute, or Compute to drop an emptied entry), released
//     before entry.mu is taken.
//   - Subscribe/Unsubscribe of a wildcard pattern: sublist.mu (write),
//     then entry.mu. Publishers that hit the cache never wait for it.
//   - SignalStats: exact.Range (each xsync bucket locked only while its
//     pointers are copied), then sublist.mu.RLock for the trie walk; each
//     entry.mu.RLock in turn, one at a time. With a listing cap the walk
//     stops once the cap is passed, so its cost does not grow with the
//     number of subscriptions; the total comes from rows.
//
// Lock order: sublist.mu → entry.mu. Nothing takes an xsync bucket while
// holding entry.mu or sublist.mu, no code holds two entry mutexes at once,
// and no callback into a Subscriber happens under any of them.
//
// # Invariants
//
//   - An entry is marked dead (under entry.mu) exactly when it becomes
//     empty and is unlinked; a dead entry is never revived. A publisher
//     holding a stale pointer finds it empty.
//   - A group is unlinked from its entry when its last member leaves; its
//     member slice is never mutated in place.
//   - nwild equals the number of wildcard entries in the trie.
//   - rows equals the number of stats rows: entries with plain subscribers
//     plus groups (a group is never empty while linked). It changes under
//     the entry.mu of the row's entry.

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v3"
)

const (
	cacheSlots = 1024 // wildcard match cache lines (a power of two)
	cacheMask  = cacheSlots - 1

	// indexAt is the size past which a subscriber set keeps a map index,
	// so that removal stays O(1) on channels with many listeners.
	indexAt = 16
	// seenLinear is the size past which a seenSet switches to a map.
	seenLinear = 16
	// scratchKeep caps the capacity of scratch slices returned to the
	// pool, so one huge fan-out does not pin memory forever.
	scratchKeep = 1 << 14
)

// sublist is the engine's subscription table. init must run before use.
type sublist struct {
	exact *xsync.MapOf[string, *entry]

	mu    sync.RWMutex // guards root and the trie below it
	root  *node
	nwild atomic.Int64  // wildcard entries in the trie
	rows  atomic.Int64  // stats rows (see Invariants)
	gen   atomic.Uint64 // bumped when the set of wildcard entries changes

	seed  maphash.Seed
	cache [cacheSlots]atomic.Pointer[cacheLine]
}

func (l *sublist) init() {
	l.exact = xsync.NewMapOf[string, *entry]()
	l.root = new(node)
	l.seed = maphash.MakeSeed()
}

// entry holds the subscriptions of one pattern.
type entry struct {
	pattern string // the engine's own copy

	mu     sync.RWMutex
	plain  subscriberSet
	groups []*group // guarded by mu; the *group values are stable
	dead   bool     // guarded by mu: unlinked from the table
}

func (ent *entry) empty() bool { return len(ent.plain.list) == 0 && len(ent.groups) == 0 }

// add adds (s, group) to ent. It reports whether the subscription is new
// and whether it made a new stats row (the first plain subscriber, or a
// new group). ent.mu is held for writing.
func (ent *entry) add(s Subscriber, name string) (added, row bool) {
	if name == "" {
		added = ent.plain.add(s)
		return added, added && len(ent.plain.list) == 1
	}
	for _, g := range ent.groups {
		if g.name == name {
			return g.join(s), false
		}
	}
	g := &group{name: strings.Clone(name)}
	g.members.Store(&[]Subscriber{s})
	ent.groups = append(ent.groups, g)
	return true, true
}

// remove removes (s, group) from ent. It reports whether the subscription
// existed and whether its stats row went away (the last plain subscriber,
// or a group's last member). ent.mu is held for writing.
func (ent *entry) remove(s Subscriber, name string) (removed, rowGone bool) {
	if name == "" {
		removed = ent.plain.remove(s)
		return removed, removed && len(ent.plain.list) == 0
	}
	for i, g := range ent.groups {
		if g.name != name {
			continue
		}
		left, empty := g.leave(s)
		if empty {
			last := len(ent.groups) - 1
			copy(ent.groups[i:], ent.groups[i+1:])
			ent.groups[last] = nil
			ent.groups = ent.groups[:last]
		}
		return left, left && empty
	}
	return false, false
}

// appendStats appends ent's stats rows to out while out holds fewer than
// limit rows (limit < 0: no cap). full reports a row left out for lack of
// room.
func (ent *entry) appendStats(out []ChannelStat, limit int) (_ []ChannelStat, full bool) {
	ent.mu.RLock()
	defer ent.mu.RUnlock()
	if ent.dead {
		return out, false
	}
	if n := len(ent.plain.list); n > 0 {
		if limit >= 0 && len(out) >= limit {
			return out, true
		}
		out = append(out, ChannelStat{Pattern: ent.pattern, Listeners: n})
	}
	for _, g := range ent.groups {
		if n := len(*g.members.Load()); n > 0 {
			if limit >= 0 && len(out) >= limit {
				return out, true
			}
			out = append(out, ChannelStat{Pattern: ent.pattern, Group: g.name, Listeners: n})
		}
	}
	return out, false
}

// group is a queue group: one (pattern, name) with members in join order.
type group struct {
	name    string
	next    atomic.Uint64                // signals offered so far
	members atomic.Pointer[[]Subscriber] // immutable; replaced under entry.mu
}

// join adds s as the last member. The owning entry.mu is held.
func (g *group) join(s Subscriber) bool {
	old := *g.members.Load()
	for _, m := range old {
		if m == s {
			return false
		}
	}
	ms := make([]Subscriber, len(old), len(old)+1)
	copy(ms, old)
	ms = append(ms, s)
	g.members.Store(&ms)
	return true
}

// leave removes s, shifting later members down. It reports whether s was
// a member and whether the group is now empty. The owning entry.mu is
// held.
func (g *group) leave(s Subscriber) (left, empty bool) {
	old := *g.members.Load()
	for i, m := range old {
		if m != s {
			continue
		}
		ms := make([]Subscriber, 0, len(old)-1)
		ms = append(ms, old[:i]...)
		ms = append(ms, old[i+1:]...)
		g.members.Store(&ms)
		return true, len(ms) == 0
	}
	return false, len(old) == 0
}

// offer gives frame to one member: the one at counter mod size, or the
// next ones in order while they refuse. It reports whether a member took
// it and, when all refused, the starting member to evict.
func (g *group) offer(frame []byte) (delivered bool, slow Subscriber) {
	ms := *g.members.Load()
	if len(ms) == 0 {
		return false, nil // emptied after the publisher collected it
	}
	start := int((g.next.Add(1) - 1) % uint64(len(ms)))
	for i, j := 0, start; i < len(ms); i++ {
		if ms[j].Deliver(frame) {
			return true, nil
		}
		if j++; j == len(ms) {
			j = 0
		}
	}
	return false, ms[start]
}

// subscriberSet is a set of plain subscribers in no particular order. It
// scans linearly while small and keeps a position index once it grows.
type subscriberSet struct {
	list []Subscriber
	idx  map[Subscriber]int // position in list; nil while len(list) <= indexAt
}

func (s *subscriberSet) find(x Subscriber) int {
	if s.idx != nil {
		if i, ok := s.idx[x]; ok {
			return i
		}
		return -1
	}
	for i, y := range s.list {
		if y == x {
			return i
		}
	}
	return -1
}

func (s *subscriberSet) add(x Subscriber) bool {
	if s.find(x) >= 0 {
		return false
	}
	s.list = append(s.list, x)
	switch {
	case s.idx != nil:
		s.idx[x] = len(s.list) - 1
	case len(s.list) > indexAt:
		s.idx = make(map[Subscriber]int, 2*len(s.list))
		for i, y := range s.list {
			s.idx[y] = i
		}
	}
	return true
}

func (s *subscriberSet) remove(x Subscriber) bool {
	i := s.find(x)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		if s.idx != nil {
			s.idx[s.list[i]] = i
		}
	}
	s.list[last] = nil
	s.list = s.list[:last]
	if s.idx != nil {
		delete(s.idx, x)
	}
	if last == 0 {
		*s = subscriberSet{}
	}
	return true
}

// node is one position in the wildcard trie.
type node struct {
	lit  map[string]*node // literal next tokens
	star *node            // '*' as the next token
	here *entry           // the pattern that ends at this node
	tail *entry           // this node's prefix followed by ".>" (or ">" at the root)
}

func (n *node) empty() bool {
	return len(n.lit) == 0 && n.star == nil && n.here == nil && n.tail == nil
}

// nextToken returns the token of s that starts at i and the start of the
// following one; a returned next > len(s) means no token follows. Empty
// tokens count: "a." is "a" then "".
func nextToken(s string, i int) (tok string, next int) {
	if j := strings.IndexByte(s[i:], '.'); j >= 0 {
		return s[i : i+j], i + j + 1
	}
	return s[i:], len(s) + 1
}

// slot returns the trie slot of a valid wildcard pattern, creating nodes
// on the way when create is set (then the pattern must be the engine's own
// copy: its tokens become map keys). It returns nil when a node is
// missing and create is not set. sublist.mu is held for writing.
func (l *sublist) slot(pattern string, create bool) **entry {
	n := l.root
	for i := 0; ; {
		tok, next := nextToken(pattern, i)
		if tok == ">" {
			return &n.tail
		}
		var c *node
		if tok == "*" {
			if c = n.star; c == nil && create {
				c = new(node)
				n.star = c
			}
		} else if c = n.lit[tok]; c == nil && create {
			if n.lit == nil {
				n.lit = make(map[string]*node)
			}
			c = new(node)
			n.lit[tok] = c
		}
		if c == nil {
			return nil
		}
		n = c
		if next > len(pattern) {
			return &n.here
		}
		i = next
	}
}

// prune deletes the empty nodes on pattern's path below n and reports
// whether n itself is empty. sublist.mu is held for writing.
func prune(n *node, pattern string, i int) bool {
	if i <= len(pattern) {
		tok, next := nextToken(pattern, i)
		switch {
		case tok == ">":
		case tok == "*":
			if n.star != nil && prune(n.star, pattern, next) {
				n.star = nil
			}
		default:
			if c := n.lit[tok]; c != nil && prune(c, pattern, next) {
				delete(n.lit, tok)
			}
		}
	}
	return n.empty()
}

// match appends to out the wildcard entries matching channel from token
// position i below n. Each pattern has one path, so no entry is appended
// twice. sublist.mu is held (read).
func match(n *node, channel string, i int, out []*entry) []*entry {
	for {
		if i > len(channel) {
			if n.here != nil {
				out = append(out, n.here)
			}
			return out
		}
		if n.tail != nil {
			out = append(out, n.tail) // '>' takes the one or more tokens left
		}
		tok, next := nextToken(channel, i)
		c := n.lit[tok]
		if n.star != nil {
			if c != nil {
				out = match(c, channel, next, out)
			}
			c = n.star
		}
		if c == nil {
			return out
		}
		n, i = c, next
	}
}

// walk calls visit for every entry of the trie below n until visit
// returns false; it reports whether the walk ran to the end. sublist.mu
// is held (read).
func walk(n *node, visit func(*entry) bool) bool {
	if n.here != nil && !visit(n.here) {
		return false
	}
	if n.tail != nil && !visit(n.tail) {
		return false
	}
	if n.star != nil && !walk(n.star, visit) {
		return false
	}
	for _, c := range n.lit {
		if !walk(c, visit) {
			return false
		}
	}
	return true
}

// stats appends to out (empty, non-nil) at most limit stats rows (limit <
// 0: all), literal patterns first, and returns the number of rows in the
// table. The walk stops at
// the first row past the limit, so a capped call costs O(limit) however
// many subscriptions there are. When nothing was left out the total is
// the number of rows listed (exact for this walk); otherwise it is the
// rows counter, which concurrent changes may have moved, and at least one
// more than listed.
func (l *sublist) stats(out []ChannelStat, limit int) (_ []ChannelStat, total int) {
	full := false
	visit := func(ent *entry) bool {
		out, full = ent.appendStats(out, limit)
		return !full
	}
	l.exact.Range(func(_ string, ent *entry) bool { return visit(ent) })
	if !full {
		l.mu.RLock()
		walk(l.root, visit)
		l.mu.RUnlock()
	}
	if !full {
		return out, len(out)
	}
	return out, max(int(l.rows.Load()), len(out)+1)
}

func (l *sublist) subscribeExact(s Subscriber, pattern, group string) bool {
	for {
		ent, ok := l.exact.Load(pattern)
		if !ok {
			key := strings.Clone(pattern) // pattern may alias a reused buffer
			ent, _ = l.exact.LoadOrCompute(key, func() *entry { return &entry{pattern: key} })
		}
		ent.mu.Lock()
		if ent.dead {
			// Emptied by an Unsubscribe that has not unlinked it yet.
			ent.mu.Unlock()
			l.unlinkExact(ent)
			continue
		}
		added, row := ent.add(s, group)
		if row {
			l.rows.Add(1)
		}
		ent.mu.Unlock()
		return added
	}
}

func (l *sublist) unsubscribeExact(s Subscriber, pattern, group string) bool {
	ent, ok := l.exact.Load(pattern)
	if !ok {
		return false
	}
	ent.mu.Lock()
	removed, rowGone := false, false
	if !ent.dead {
		removed, rowGone = ent.remove(s, group)
	}
	if rowGone {
		l.rows.Add(-1)
	}
	died := removed && ent.empty()
	if died {
		ent.dead = true
	}
	ent.mu.Unlock()
	if died {
		l.unlinkExact(ent)
	}
	return removed
}

// unlinkExact deletes a dead entry from exact unless it was replaced.
func (l *sublist) unlinkExact(ent *entry) {
	l.exact.Compute(ent.pattern, func(old *entry, loaded bool) (*entry, bool) {
		return old, !loaded || old == ent
	})
}

func (l *sublist) subscribeWild(s Subscriber, pattern, group string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := l.slot(pattern, false)
	if sl == nil || *sl == nil {
		own := strings.Clone(pattern)
		sl = l.slot(own, true)
		*sl = &entry{pattern: own}
		l.nwild.Add(1)
		l.gen.Add(1)
	}
	ent := *sl
	ent.mu.Lock()
	added, row := ent.add(s, group)
	if row {
		l.rows.Add(1)
	}
	ent.mu.Unlock()
	return added
}

func (l *sublist) unsubscribeWild(s Subscriber, pattern, group string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := l.slot(pattern, false)
	if sl == nil || *sl == nil {
		return false
	}
	ent := *sl
	ent.mu.Lock()
	removed, rowGone := ent.remove(s, group)
	if rowGone {
		l.rows.Add(-1)
	}
	died := removed && ent.empty()
	if died {
		ent.dead = true
	}
	ent.mu.Unlock()
	if died {
		*sl = nil
		prune(l.root, pattern, 0)
		l.nwild.Add(-1)
		l.gen.Add(1)
	}
	return removed
}

// cacheLine is one immutable match-cache result.
type cacheLine struct {
	channel string    // the engine's own copy
	gen     uint64    // sublist.gen when the walk ran
	ents    []*entry  // matching wildcard entries; nil for none
	inline  [2]*entry // backs ents for up to two matches
}

// wildMatch returns the wildcard entries matching channel, from the cache
// or from a trie walk that refills it. The result is shared: read only.
func (l *sublist) wildMatch(channel string) []*entry {
	h := maphash.String(l.seed, channel)
	a, b := h&cacheMask, (h>>32)&cacheMask
	gen := l.gen.Load()
	ca := l.cache[a].Load()
	if ca != nil && ca.gen == gen && ca.channel == channel {
		return ca.ents
	}
	cb := l.cache[b].Load()
	if cb != nil && cb.gen == gen && cb.channel == channel {
		return cb.ents
	}

	line := &cacheLine{channel: strings.Clone(channel)}
	l.mu.RLock()
	line.gen = l.gen.Load() // writers bump it under mu: consistent with the walk
	line.ents = match(l.root, channel, 0, line.inline[:0])
	l.mu.RUnlock()
	if len(line.ents) == 0 {
		line.ents = nil
	}
	gen = line.gen
	// Fill a free or stale slot of the two; else replace the one a hash
	// bit picks.
	switch {
	case ca == nil || ca.gen != gen:
		l.cache[a].Store(line)
	case cb == nil || cb.gen != gen:
		l.cache[b].Store(line)
	case h>>63 == 0:
		l.cache[a].Store(line)
	default:
		l.cache[b].Store(line)
	}
	return line.ents
}

// signal implements Engine.Signal.
func (l *sublist) signal(channel string, frame []byte) int {
	ex, _ := l.exact.Load(channel)
	var wild []*entry
	if l.nwild.Load() != 0 {
		wild = l.wildMatch(channel)
	}
	if ex == nil && len(wild) == 0 {
		return 0
	}
	d := deliveryPool.Get().(*delivery)
	n := d.run(ex, wild, frame)
	for _, s := range d.slow.list {
		s.Evict()
	}
	d.reset()
	deliveryPool.Put(d)
	return n
}

// delivery is the pooled scratch of one Signal call.
type delivery struct {
	plain  []Subscriber // exact plain subscribers, then wildcard ones
	groups []*group     // exact groups, then wildcard ones
	served seenSet      // accepted a plain copy (only when dedup is needed)
	slow   seenSet      // to evict after delivery
}

var deliveryPool = sync.Pool{New: func() any { return new(delivery) }}

// run collects the subscriptions of ex and wild under their read locks,
// releases them, then delivers in the four steps of Engine.Signal.
func (d *delivery) run(ex *entry, wild []*entry, frame []byte) int {
	sources := 0 // entries contributing plain subscribers
	if ex != nil {
		ex.mu.RLock()
		if len(ex.plain.list) > 0 {
			sources++
			d.plain = append(d.plain, ex.plain.list...)
		}
		d.groups = append(d.groups, ex.groups...)
		ex.mu.RUnlock()
	}
	nplain, ngroups := len(d.plain), len(d.groups)
	for _, ent := range wild {
		ent.mu.RLock()
		if len(ent.plain.list) > 0 {
			sources++
			d.plain = append(d.plain, ent.plain.list...)
		}
		d.groups = append(d.groups, ent.groups...)
		ent.mu.RUnlock()
	}
	// A subscriber appears at most once per entry, so copies can only be
	// duplicated when two entries contribute plain subscribers.
	dedup := sources > 1

	n := d.deliverPlain(d.plain[:nplain], frame, false, dedup)
	n += d.deliverGroups(d.groups[:ngroups], frame)
	n += d.deliverPlain(d.plain[nplain:], frame, dedup, dedup)
	n += d.deliverGroups(d.groups[ngroups:], frame)
	return n
}

func (d *delivery) deliverPlain(subs []Subscriber, frame []byte, skip, mark bool) int {
	n := 0
	for _, s := range subs {
		if skip && d.served.has(s) {
			continue
		}
		if !s.Deliver(frame) {
			d.slow.add(s) // full: not served, so a later step still tries it
			continue
		}
		n++
		if mark {
			d.served.insert(s) // absent: unique in its entry, or checked above
		}
	}
	return n
}

func (d *delivery) deliverGroups(gs []*group, frame []byte) int {
	n := 0
	for _, g := range gs {
		ok, slow := g.offer(frame)
		if ok {
			n++
		} else if slow != nil {
			d.slow.add(slow)
		}
	}
	return n
}

// reset drops every reference so pooled scratch does not keep
// subscribers alive.
func (d *delivery) reset() {
	d.plain = resetSlice(d.plain)
	d.groups = resetSlice(d.groups)
	d.served.reset()
	d.slow.reset()
}

func resetSlice[T any](s []T) []T {
	if cap(s) > scratchKeep {
		return nil
	}
	clear(s)
	return s[:0]
}

// seenSet is a small insertion-ordered set of subscribers: a linear scan
// while small, a map once it grows.
type seenSet struct {
	list []Subscriber
	m    map[Subscriber]struct{}
}

func (s *seenSet) has(x Subscriber) bool {
	if s.m != nil {
		_, ok := s.m[x]
		return ok
	}
	for _, y := range s.list {
		if y == x {
			return true
		}
	}
	return false
}

// add adds x unless present and reports whether it did.
func (s *seenSet) add(x Subscriber) bool {
	if s.has(x) {
		return false
	}
	s.insert(x)
	return true
}

// insert adds x, which the caller knows to be absent.
func (s *seenSet) insert(x Subscriber) {
	s.list = append(s.list, x)
	switch {
	case s.m != nil:
		s.m[x] = struct{}{}
	case len(s.list) > seenLinear:
		s.m = make(map[Subscriber]struct{}, 2*len(s.list))
		for _, y := range s.list {
			s.m[y] = struct{}{}
		}
	}
}

func (s *seenSet) reset() {
	s.list = resetSlice(s.list)
	if s.m != nil {
		if len(s.m) > scratchKeep {
			s.m = nil
		} else {
			clear(s.m)
		}
	}
}
