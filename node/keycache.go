package node

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// DefaultKeyCacheSize is the number of unwrapped keys a node keeps when
// its configuration does not say (Config.KeyCacheSize, key_cache_size).
const DefaultKeyCacheSize = 10000

// keyCacheShards splits a large cache so that requests on different keys
// rarely wait for one another; a small cache is one shard, so its bound
// is exact.
const (
	keyCacheShards        = 16
	keyCacheShardMinTotal = 1024
)

// keyCache is a bounded, sharded LRU cache of unwrapped keys.
//
// Each shard is a map plus an intrusive doubly linked list in recency
// order, under one mutex. An entry removed from the cache (evicted,
// invalidated, cleared) is retired: its material is zeroed once the
// requests holding it release it (liveKey's reference count).
//
// Misses are single-flight per name: the first request registers a fill,
// loads the key outside the lock, and inserts it; requests arriving
// meanwhile wait for the fill. An invalidation (or clear) that happens
// while a fill runs marks the fill stale: its result is retired instead of
// cached and every waiter looks again, so a fill that read a record before
// a rotation, a disable or a deletion can never put the old key in the
// cache after the event that removed it.
type keyCache struct {
	seed     maphash.Seed
	shards   []cacheShard
	perShard int

	hits, misses, evictions atomic.Uint64
	loads                   atomic.Uint64 // keys unwrapped
}

type cacheShard struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
	fills   map[string]*cacheFill
	// head.next is the most recently used entry, head.prev the least.
	head cacheEntry
	_    [64]byte // keep shards' locks on separate cache lines
}

type cacheEntry struct {
	name       string
	lk         *liveKey
	prev, next *cacheEntry
}

type cacheFill struct {
	done  chan struct{}
	stale bool  // set under the shard lock
	err   error // read after done is closed
}

// KeyCacheStats is a snapshot of a node's key cache counters.
type KeyCacheStats struct {
	Size, Capacity          int
	Hits, Misses, Evictions uint64
}

func newKeyCache(size int) *keyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	n := 1
	if size >= keyCacheShardMinTotal {
		n = keyCacheShards
	}
	c := &keyCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), perShard: (size + n - 1) / n}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.entries = map[string]*cacheEntry{}
		sh.fills = map[string]*cacheFill{}
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return c
}

func (c *keyCache) shard(name string) *cacheShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, name)%uint64(len(c.shards))]
}

// get returns name's key with a reference held, loading it with load on a
// miss. retry means the key was removed between lookup and use, or the
// fill it waited for went stale: the caller looks again.
func (c *keyCache) get(name string, load func(string) (*liveKey, error)) (lk *liveKey, retry bool, err error) {
	sh := c.shard(name)
	sh.mu.Lock()
	if e := sh.entries[name]; e != nil {
		if sh.head.next != e {
			sh.unlink(e)
			sh.pushFront(e)
		}
		lk := e.lk
		sh.mu.Unlock()
		if !lk.acquire() {
			return nil, true, nil
		}
		c.hits.Add(1)
		return lk, false, nil
	}
	if f := sh.fills[name]; f != nil {
		sh.mu.Unlock()
		<-f.done
		if f.err != nil {
			return nil, false, f.err
		}
		return nil, true, nil
	}
	f := &cacheFill{done: make(chan struct{})}
	sh.fills[name] = f
	sh.mu.Unlock()
	c.misses.Add(1)

	lk, err = load(name)

	sh.mu.Lock()
	if sh.fills[name] == f {
		delete(sh.fills, name)
	}
	stale := f.stale
	var evicted []*liveKey
	switch {
	case stale:
		if err == nil {
			c.loads.Add(1)
		}
		err = nil // waiters look again, and so does this caller
	case err == nil:
		c.loads.Add(1)
		lk.acquire() // cannot fail: nobody else has seen lk
		evicted = sh.insert(name, lk, c.perShard)
	}
	f.err = err
	sh.mu.Unlock()
	close(f.done)
	for _, old := range evicted {
		old.retire()
		c.evictions.Add(1)
	}
	if stale {
		if lk != nil {
			lk.retire()
		}
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lk, false, nil
}

// insert adds name at the front, replacing an entry of the same name
// (there is none: fills are single-flight and invalidations remove), and
// returns the keys it evicted. Caller holds sh.mu.
func (sh *cacheShard) insert(name string, lk *liveKey, limit int) []*liveKey {
	var out []*liveKey
	if old := sh.entries[name]; old != nil {
		sh.unlink(old)
		delete(sh.entries, name)
		out = append(out, old.lk)
	}
	e := &cacheEntry{name: name, lk: lk}
	sh.entries[name] = e
	sh.pushFront(e)
	for len(sh.entries) > limit {
		lru := sh.head.prev
		sh.unlink(lru)
		delete(sh.entries, lru.name)
		out = append(out, lru.lk)
	}
	return out
}

func (sh *cacheShard) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *cacheShard) pushFront(e *cacheEntry) {
	e.prev, e.next = &sh.head, sh.head.next
	sh.head.next.prev = e
	sh.head.next = e
}

// invalidate drops name from the cache and makes a fill of name that is
// under way discard its result.
func (c *keyCache) invalidate(name string) {
	sh := c.shard(name)
	sh.mu.Lock()
	e := sh.entries[name]
	if e != nil {
		sh.unlink(e)
		delete(sh.entries, name)
	}
	if f := sh.fills[name]; f != nil {
		f.stale = true
		delete(sh.fills, name)
	}
	sh.mu.Unlock()
	if e != nil {
		e.lk.retire()
	}
}

// clear drops every key and makes every fill under way discard its
// result.
func (c *keyCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		entries := sh.entries
		sh.entries = map[string]*cacheEntry{}
		sh.head.next, sh.head.prev = &sh.head, &sh.head
		for _, f := range sh.fills {
			f.stale = true
		}
		sh.fills = map[string]*cacheFill{}
		sh.mu.Unlock()
		for _, e := range entries {
			e.lk.retire()
		}
	}
}

// contains reports whether name is cached (tests).
func (c *keyCache) contains(name string) bool {
	sh := c.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.entries[name] != nil
}

func (c *keyCache) stats() KeyCacheStats {
	st := KeyCacheStats{
		Capacity:  c.perShard * len(c.shards),
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Evictions: c.evictions.Load(),
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		st.Size += len(sh.entries)
		sh.mu.Unlock()
	}
	return st
}
