package lora

import (
	"errors"
	"fmt"
	"time"
)

// Class is the priority of a queued frame; lower values go first.
type Class int

const (
	// Own frames carry events this device created.
	Own Class = iota
	// Relay frames carry other devices' events passed on.
	Relay
	// Backfill frames answer requests for old events.
	Backfill
	numClasses
)

func (c Class) String() string {
	switch c {
	case Own:
		return "own"
	case Relay:
		return "relay"
	case Backfill:
		return "backfill"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ErrQueueFull is returned by Queue.Push when the frame does not fit, even
// after evicting every frame of a lower class.
var ErrQueueFull = errors.New("lora: send queue full")

// Queue holds frames waiting for airtime in three classes: a frame of a
// higher class (Own before Relay before Backfill) always goes first, and
// frames of one class keep their order. When the queue is full, a new
// frame evicts the newest frames of lower classes. Strict priority can
// starve Backfill while Own traffic lasts; that is the intent.
//
// A Queue is not safe for concurrent use.
type Queue struct {
	max   int // bytes; 0 means no bound
	q     [numClasses][][]byte
	bytes [numClasses]int
}

// NewQueue returns a queue holding at most maxBytes payload bytes (0: no
// bound).
func NewQueue(maxBytes int) *Queue {
	return &Queue{max: maxBytes}
}

// Push appends a frame to its class. The queue keeps p; the caller must
// not modify it afterwards. It returns the frames evicted to make room.
func (q *Queue) Push(c Class, p []byte) (evicted int, err error) {
	if c < 0 || c >= numClasses {
		return 0, fmt.Errorf("lora: push to unknown %v", c)
	}
	if q.max > 0 {
		room := q.max - q.Bytes()
		for low := numClasses - 1; low > c && room < len(p); low-- {
			for room < len(p) && len(q.q[low]) > 0 {
				last := q.q[low][len(q.q[low])-1]
				q.q[low] = q.q[low][:len(q.q[low])-1]
				q.bytes[low] -= len(last)
				room += len(last)
				evicted++
			}
		}
		if room < len(p) {
			return evicted, ErrQueueFull
		}
	}
	q.q[c] = append(q.q[c], p)
	q.bytes[c] += len(p)
	return evicted, nil
}

// Peek returns the frame Pop would return, without removing it.
func (q *Queue) Peek() (p []byte, c Class, ok bool) {
	for c := range numClasses {
		if len(q.q[c]) > 0 {
			return q.q[c][0], c, true
		}
	}
	return nil, 0, false
}

// Pop removes and returns the next frame.
func (q *Queue) Pop() (p []byte, c Class, ok bool) {
	p, c, ok = q.Peek()
	if ok {
		q.q[c][0] = nil
		q.q[c] = q.q[c][1:]
		q.bytes[c] -= len(p)
	}
	return p, c, ok
}

// Len is the number of queued frames.
func (q *Queue) Len() int {
	n := 0
	for c := range numClasses {
		n += len(q.q[c])
	}
	return n
}

// Bytes is the number of queued payload bytes.
func (q *Queue) Bytes() int {
	n := 0
	for c := range numClasses {
		n += q.bytes[c]
	}
	return n
}

// ClassLen and ClassBytes report one class.
func (q *Queue) ClassLen(c Class) int   { return len(q.q[c]) }
func (q *Queue) ClassBytes(c Class) int { return q.bytes[c] }

// Next returns the next frame if the budget admits it at now, recording
// it in b; otherwise it returns how long to wait before asking again. A
// frame that can never be sent (ErrDwell, ErrOverBudget) is removed and
// returned with the error so the caller can split or drop it.
func (q *Queue) Next(now time.Time, b *Budget) (p []byte, c Class, wait time.Duration, err error) {
	p, c, ok := q.Peek()
	if !ok {
		return nil, 0, 0, nil
	}
	wait, err = b.Take(now, len(p))
	if err != nil {
		q.Pop()
		return p, c, 0, err
	}
	if wait > 0 {
		return nil, 0, wait, nil
	}
	q.Pop()
	return p, c, 0, nil
}

// ETA estimates, from now, when the queued frames will have been sent
// under budget b (which is not changed), sending back to back in priority
// order as Next would. It returns the time until the last frame of each
// class ends (0 for an empty class) and until the whole queue is sent.
// Frames that can never be sent are skipped.
func (q *Queue) ETA(now time.Time, b *Budget) (perClass [3]time.Duration, total time.Duration) {
	plan := b.Clone()
	t := now
	for c := range numClasses {
		for _, p := range q.q[c] {
			air := plan.params.Airtime(len(p))
			wait, err := plan.WaitAirtime(t, air)
			if err != nil {
				continue
			}
			t = t.Add(wait)
			plan.Record(t, air)
			t = t.Add(air)
			perClass[c] = t.Sub(now)
		}
	}
	return perClass, t.Sub(now)
}
