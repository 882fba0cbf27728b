package radiosync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
)

// Frame types for tests.
const (
	TypeFrontier = typeFrontier
	TypeData     = typeData
	TypeAck      = typeAck
)

// SealFor builds a unicast frame from n to the peer with key id keyID,
// sealed with n's next counter, as NextFrame would.
func SealFor(n *Node, keyID string, typ byte, body []byte) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshPeersLocked()
	for _, p := range n.peers {
		if p.keyID == keyID {
			f := unicast(typ, n.hint, p.hint, body)
			seal(f, n.nextCtrLocked(), p.key)
			return f
		}
	}
	return nil
}

// StrangerFrame builds a frame to n from a key n does not know, as well
// as the stranger can: with the pair key it would share with n.
func StrangerFrame(n *Node, stranger ed25519.PrivateKey, typ byte, body []byte) []byte {
	key, err := pairKey(stranger, n.me.Public(), n.st.UID())
	if err != nil {
		panic(err)
	}
	f := unicast(typ, hintOf(stranger.Public().(ed25519.PublicKey)), n.hint, body)
	seal(f, 1<<39, key)
	return f
}

// ParseFrontier exposes the FRONTIER body parser.
func ParseFrontier(p []byte) (int, error) {
	fp, err := parseFrontier(p)
	if err != nil {
		return 0, err
	}
	return len(fp.entries), nil
}

// FrontierPages returns the FRONTIER bodies n would send, for frames of
// n's MTU.
func FrontierPages(n *Node) ([][]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, err := n.viewLocked(context.Background())
	if err != nil {
		return nil, err
	}
	return encodeFrontier(v, n.o.MTU-headerSize-tagSize), nil
}

// MergePages merges FRONTIER bodies as a receiver does and says whether
// they cover every actor hash, and how many actors they name.
func MergePages(pages [][]byte) (complete bool, actors int, err error) {
	var t theirFrontier
	for _, p := range pages {
		fp, err := parseFrontier(p)
		if err != nil {
			return false, 0, err
		}
		t.add(fp)
	}
	return t.complete(), len(t.entries), nil
}

// CatchUp brings n's view of the log up to its store's frontier and
// returns how many events it holds.
func CatchUp(ctx context.Context, n *Node) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, err := n.viewLocked(ctx)
	if err != nil {
		return 0, err
	}
	return viewEvents(v), nil
}

// CheckView brings n's view up to date and compares it with a view
// built from the whole log: the same chains, lines and positions.
func CheckView(ctx context.Context, n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, err := n.viewLocked(ctx)
	if err != nil {
		return err
	}
	w, err := buildView(ctx, n.st)
	if err != nil {
		return err
	}
	if v.digest != w.digest || len(v.chains) != len(w.chains) || viewEvents(v) != viewEvents(w) || len(v.at) != len(w.at) {
		return fmt.Errorf("view: %d actors, %d events; rebuilt: %d actors, %d events", len(v.chains), viewEvents(v), len(w.chains), viewEvents(w))
	}
	for a, wc := range w.chains {
		vc := v.chains[a]
		if len(vc) != len(wc) {
			return fmt.Errorf("actor %s: %d events in the view, %d rebuilt", a, len(vc), len(wc))
		}
		for k := range wc {
			ve, we := v.events[vc[k]], w.events[wc[k]]
			if ve.ID != we.ID || !bytes.Equal(v.lines[vc[k]], w.lines[wc[k]]) || v.pos[ve.ID] != k+1 || v.at[ve.ID] != vc[k] {
				return fmt.Errorf("actor %s, position %d: view has %s, rebuilt %s", a, k+1, ve.ID, we.ID)
			}
		}
	}
	return nil
}

// DataFragment returns a DATA frame's fragment index.
func DataFragment(f []byte) (int, bool) {
	if len(f) < headerSize+dataExtra+tagSize || f[0] != version<<4|typeData {
		return 0, false
	}
	return int(f[headerSize+dataExtra-2] &^ ackRequest), true
}
