package smpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PartStore keeps the parts of concatenated MOs where every daemon sees
// them: a carrier spreads the deliver_sm of one system_id over all its
// binds, and with bind leases those binds may be held by different daemons,
// so one daemon's memory cannot join them. A part stored is durable, so it
// is acknowledged at once; an MO completed or taken is held by one caller
// until it reports it handed on (DoneMO), so a daemon dying in between loses
// nothing: the hold lapses and another takes it. (queue.Queue implements
// it, through the daemon's wiring.)
type PartStore interface {
	// AddMOPart stores part seq of total of the MO named key; when it
	// completes the MO it returns it, held by the caller (complete true).
	// A late copy of a part of an MO handed on is dropped.
	AddMOPart(ctx context.Context, carrier, key string, seq, total int, part []byte, timeout time.Duration) (mo StoredMO, complete bool, err error)
	// TakeMOs holds and returns at most n MOs still incomplete after the
	// timeout given when their first part came, or whose holder did not
	// report them handed on in time.
	TakeMOs(ctx context.Context, carrier string, n int) ([]StoredMO, error)
	// DoneMO ends the holding of an MO handed on.
	DoneMO(ctx context.Context, carrier, key string) error
	// ReleaseMO ends the holding of an MO whose hand-off failed, dropping
	// part drop (0: none), due again after wait.
	ReleaseMO(ctx context.Context, carrier, key string, drop int, wait time.Duration) error
}

// StoredMO is an MO held from a PartStore.
type StoredMO struct {
	Key   string
	First time.Time
	Parts map[int][]byte
}

// storeKey names an assembly in a PartStore: every field of assemblyKey, so
// parts of different messages never meet.
// The addresses are escaped: an SMSC's address may hold anything, "|"
// included.
func (k assemblyKey) storeKey() string {
	return strings.Join([]string{url.QueryEscape(k.from), url.QueryEscape(k.to), strconv.Itoa(int(k.ref)),
		strconv.FormatBool(k.ref16), strconv.FormatBool(k.sar), strconv.Itoa(int(k.total))}, "|")
}

// parseStoreKey reads storeKey's form back.
func parseStoreKey(s string) (assemblyKey, error) {
	f := strings.Split(s, "|")
	if len(f) != 6 {
		return assemblyKey{}, fmt.Errorf("smpp: assembly key %q", s)
	}
	from, err0 := url.QueryUnescape(f[0])
	to, err5 := url.QueryUnescape(f[1])
	ref, err1 := strconv.ParseUint(f[2], 10, 16)
	ref16, err2 := strconv.ParseBool(f[3])
	sar, err3 := strconv.ParseBool(f[4])
	total, err4 := strconv.ParseUint(f[5], 10, 8)
	if err := errors.Join(err0, err1, err2, err3, err4, err5); err != nil {
		return assemblyKey{}, fmt.Errorf("smpp: assembly key %q: %w", s, err)
	}
	return assemblyKey{from: from, to: to, ref: uint16(ref), ref16: ref16, sar: sar, total: uint8(total)}, nil
}

// encode is a part as stored: its alphabet, then its units.
func (p moPart) encode() []byte { return append([]byte{byte(p.alpha)}, p.units...) }

func decodeStoredPart(b []byte) (moPart, bool) {
	if len(b) == 0 || alphabet(b[0]) > alphaUCS2 {
		return moPart{}, false
	}
	return moPart{alpha: alphabet(b[0]), units: b[1:]}, true
}

// storedParts returns the parts in part-number order, skipping any that
// does not decode (logged).
func storedParts(log *slog.Logger, parts map[int][]byte) []moPart {
	seqs := make([]int, 0, len(parts))
	for s := range parts {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	out := make([]moPart, 0, len(seqs))
	for _, s := range seqs {
		p, ok := decodeStoredPart(parts[s])
		if !ok {
			log.Warn("smpp stored MO part unreadable, skipped", "part", s)
			continue
		}
		out = append(out, p)
	}
	return out
}

// addStoredPart is the concatenated-MO path with a PartStore: the part is
// stored (ESME_RX_T_APPN when it cannot be, so the carrier redelivers it),
// and the part that completes the MO hands it to the handler; when the
// handler fails this part is dropped from the store, to come again with
// the carrier's redelivery.
func (p *Pool) addStoredPart(ctx context.Context, b *bind, k assemblyKey, seq uint8, part moPart, mo MO) uint32 {
	key := k.storeKey()
	held, complete, err := p.parts.AddMOPart(ctx, p.carrier, key, int(seq), int(k.total), part.encode(), p.re.timeout)
	if err != nil {
		b.log.Warn("smpp MO part could not be stored, ESME_RX_T_APPN sent", "err", err)
		return StatusXTAppn
	}
	if !complete {
		return StatusOK // stored where every daemon sees it (or a late copy)
	}
	mo.Text = joinParts(storedParts(b.log, held.Parts))
	mo.Segments = int(k.total)
	mo.ReceivedAt = held.First
	st := p.deliverMO(ctx, b.log, mo)
	bg := context.WithoutCancel(ctx)
	if st != StatusOK {
		if err := p.parts.ReleaseMO(bg, p.carrier, key, int(seq), p.re.timeout); err != nil {
			b.log.Warn("smpp MO held after a failed hand-off; it is taken again when its hold lapses", "err", err)
		}
		return st
	}
	if err := p.parts.DoneMO(bg, p.carrier, key); err != nil {
		// Delivered; another daemon may deliver it again once the hold
		// lapses (the webhook event is at least once anyway).
		b.log.Warn("smpp MO handed on but not marked done", "err", err)
	}
	return StatusOK
}

// sweepStoredMOs hands on the stored MOs of the carrier whose time came
// (incomplete after the reassembly timeout, or not handed on by a holder
// that died or failed): any daemon's pool of the carrier takes each once at
// a time, and one whose hand-off fails is taken again after the hold.
func (p *Pool) sweepStoredMOs(ctx context.Context) {
	mos, err := p.parts.TakeMOs(ctx, p.carrier, 100)
	if err != nil {
		p.log.Warn("smpp incomplete MOs could not be read", "err", err)
	}
	for _, s := range mos {
		k, err := parseStoreKey(s.Key)
		if err != nil {
			p.log.Error("smpp stored MO dropped: unreadable key", "err", err)
			_ = p.parts.DoneMO(ctx, p.carrier, s.Key)
			continue
		}
		parts := storedParts(p.log, s.Parts)
		if len(parts) < int(k.total) {
			p.log.Warn("smpp multipart MO incomplete after the reassembly timeout, delivering the parts received",
				"received", len(parts), "total", k.total)
		}
		mo := MO{From: k.from, To: k.to, Text: joinParts(parts), Segments: len(parts), ReceivedAt: s.First, Carrier: p.carrier}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = p.handler.HandleMO(hctx, mo)
		cancel()
		if err != nil {
			p.log.Warn("smpp MO handler failed for a stored MO, will retry when its hold lapses", "err", err)
			continue
		}
		p.m.mo.WithLabelValues(p.carrier).Inc()
		if err := p.parts.DoneMO(context.WithoutCancel(ctx), p.carrier, s.Key); err != nil {
			p.log.Warn("smpp MO handed on but not marked done", "err", err)
		}
	}
}
