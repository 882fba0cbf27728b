// Package scan reads an events.ndjson stream with every core: one
// goroutine splits lines (log.Reader), workers parse each line and, when
// asked, check its event_id and signature, and the caller receives the
// results strictly in file order. Replay (reducing a log into state) and
// verify are both built on it.
//
// Memory stays bounded: at most a few batches of lines are in flight, and
// nothing is kept after the caller's callback returns.
package scan

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"sync"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// Options configures Run.
type Options struct {
	// Workers is the number of parsing goroutines (default GOMAXPROCS).
	Workers int
	// Registry, when set, makes workers check each event's id rule and
	// signature against it (and implies Hashes).
	Registry *bplog.Registry
	// Hashes makes workers fill Item.Canonical, Item.Hash and
	// Item.EncodeErr. Without it (and without Registry) they only parse,
	// which is what replaying a log into state needs.
	Hashes bool
	// Offset and FirstLine position a reader that starts mid-file.
	Offset    int64
	FirstLine int
}

// Item is one non-blank line and what the workers learned about it.
type Item struct {
	Number     int
	Offset     int64
	End        int64
	Terminated bool
	// Exact reports that the line's bytes are its text and one LF: no
	// surrounding whitespace, no CR.
	Exact bool

	// Err is set when the line is not JSON we can use (too long, invalid
	// UTF-8, a parse error). Value is then null.
	Err   error
	Value canon.Value

	// Event is set when Value is an object; EventErr when its envelope is
	// incomplete (Event still holds what could be read).
	Event    *bplog.Event
	EventErr error

	// With Options.Hashes: Canonical reports whether the stored line is
	// exactly the canonical encoding; Hash is SHA-256 of the canonical
	// encoding (zero when it cannot be encoded, EncodeErr says why).
	Canonical bool
	Hash      [32]byte
	EncodeErr error

	// Filled when Options.Registry is set and Event is non-nil.
	IDRule bplog.IDRule
	WantID string
	SigErr error // nil: valid signature by a usable key
}

type batch struct {
	seq   int
	items []Item
	texts [][]byte
}

const batchSize = 256

// Run reads r and calls fn for every item in file order, from the calling
// goroutine. It stops at the first error fn returns, at a read error, or
// when ctx is done.
func Run(ctx context.Context, r io.Reader, opts Options, fn func(*Item) error) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	todo := make(chan *batch, workers*2)
	done := make(chan *batch, workers*2)
	var readErr error
	var wg sync.WaitGroup

	// Reader.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(todo)
		rd := bplog.NewReaderAt(r, opts.Offset, max(opts.FirstLine, 1))
		seq := 0
		b := &batch{seq: seq}
		send := func() bool {
			select {
			case todo <- b:
			case <-ctx.Done():
				return false
			}
			seq++
			b = &batch{seq: seq}
			return true
		}
		for rd.Next() {
			l := rd.Line()
			exact := l.Terminated && l.End-l.Offset == int64(len(l.Text))+1
			b.items = append(b.items, Item{Number: l.Number, Offset: l.Offset, End: l.End, Terminated: l.Terminated, Exact: exact, Err: l.Err})
			b.texts = append(b.texts, append([]byte(nil), l.Text...))
			if len(b.items) == batchSize && !send() {
				return
			}
		}
		readErr = rd.Err()
		if len(b.items) > 0 {
			send()
		}
	}()

	// Workers.
	var wwg sync.WaitGroup
	for range workers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for b := range todo {
				for i := range b.items {
					process(&b.items[i], b.texts[i], opts.Registry, opts.Hashes || opts.Registry != nil)
				}
				b.texts = nil
				select {
				case done <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wwg.Wait(); close(done) }()

	// Collector: deliver in order.
	pending := map[int]*batch{}
	next := 0
	var fnErr error
	for b := range done {
		if fnErr != nil {
			continue
		}
		pending[b.seq] = b
		for {
			nb, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			for i := range nb.items {
				if err := fn(&nb.items[i]); err != nil {
					fnErr = err
					cancel()
					break
				}
			}
			if fnErr != nil {
				break
			}
		}
	}
	wg.Wait()
	if fnErr != nil {
		return fnErr
	}
	if readErr != nil {
		return readErr
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func process(it *Item, text []byte, reg *bplog.Registry, hashes bool) {
	if it.Err != nil {
		return
	}
	v, err := bplog.ParseLine(text)
	if err != nil {
		it.Err = err
		return
	}
	it.Value = v
	if !hashes {
		if v.Kind() == canon.Object {
			it.Event, it.EventErr = bplog.NewEvent(v)
		}
		return
	}
	if v.Kind() != canon.Object {
		enc, err := canon.Encode(v)
		if err != nil {
			it.EncodeErr = err
		} else {
			it.Canonical = string(enc) == string(text)
			it.Hash = sha256.Sum256(enc)
		}
		return
	}
	it.Event, it.EventErr = bplog.NewEvent(v)
	e := it.Event
	full, signed, idPre, err := e.Encodings()
	if err != nil {
		it.EncodeErr = err
		return
	}
	it.Canonical = string(full) == string(text)
	it.Hash = sha256.Sum256(full)
	if reg == nil {
		return
	}
	it.IDRule, it.WantID, _ = e.CheckIDWith(idPre)
	switch {
	case e.Sig == "":
		it.SigErr = bplog.ErrNoSignature
	case e.KeyID == "":
		it.SigErr = errors.New("log: signed event has no actor_key_id")
	default:
		vk, err := reg.ResolveVerifier(e.KeyID)
		if errors.Is(err, bplog.ErrUnknownKey) {
			it.SigErr = err
			return
		}
		if verr := e.VerifySignatureWith(vk, signed); verr != nil {
			it.SigErr = verr
		} else if err != nil {
			it.SigErr = err // valid signature, revoked key
		}
	}
}
