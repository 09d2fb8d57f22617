"""The vectorised rater: a frame of CDRs in, a frame of rated calls out.

How one call is matched, fast (see docs/rating.md for the full reasoning):

1. The dialled number becomes ``K``, its first 18 digits read as an int64 and padded with
   zeros on the right, plus ``ndig``, its number of digits.  A prefix ``p`` of length ``L``
   (<= 18) covers the key interval ``[p * 10**(18-L), (p+1) * 10**(18-L))``; ``p`` begins the
   number iff ``K`` is in that interval and ``ndig >= L``.
2. The intervals of *all* prefixes of a group of decks split the key space into segments; on
   each segment the longest prefix of each deck is constant.  A multibit trie over the digits
   of ``K`` (one 10**6-entry table, then 100-entry nodes per 2 digits) finds the segment with a
   few array lookups, no binary search over the deck.  One segment lookup serves every tariff
   of every level (customer, resellers, carrier): a table ``segment x deck -> prefix id``
   turns it into each deck's longest prefix.
3. That prefix may be unusable: longer than the number (a zero-padding artefact), or without
   a row whose effective window contains ``t``.  Then its parent (the longest shorter prefix of
   the same deck) is tried, and so on: vectorised over the few calls concerned.
4. Prefixes of 19-20 digits (legal but rare) are matched exactly, one call at a time, for the
   calls whose first 18 digits could reach them.

Costs are computed in int64 exactly as in :mod:`rating.money`; the bounds enforced on decks
and CDRs make overflow impossible.  Work is split in chunks that stay in cache, spread over a
small thread pool (numpy releases the GIL).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl

from cdr.schema import CDR_TYPES
from rating.book import CUSTOMER, MAX_DURATION_MS, RatingBook
from rating.money import CARRIER_DECIMALS, MAX_DECIMALS

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B8 = npt.NDArray[np.bool_]

KEY_DIGITS = 18
_POW10 = np.array([10**i for i in range(KEY_DIGITS + 1)], dtype=np.int64)
FIRST_LEVEL_DIGITS = 6  # a 10**6-entry first table; small books use 4 digits (10**4 entries)
SMALL_BOOK_PREFIXES = 5_000
NODE_DIGITS = 2
# Instants must lie in [0, 2**42) ms (1970 .. 2109) so that (window rank, instant) packs into
# one int64 search key: rank < 2**21, instant < 2**42.
T_BITS = 42
T_LIMIT = 1 << T_BITS
T_MAX = T_LIMIT - 1  # accepted instants: 0 <= t < T_MAX
MAX_MULTI_WINDOW_PREFIXES = 1 << (62 - T_BITS)
# segment x deck tables bigger than this are split into several match groups.
MAX_GROUP_TABLE = 64_000_000
CHUNK = 1 << 14
TERM_BITS = 22  # rate (< 2**40 micro-units) and term id share one int64: rate << 22 | term
BILL_CAP = 7_200  # billed-seconds tables cover calls up to two hours
MAX_BILL_TABLE = 8_000_000

STATUS_CATEGORIES = ["rated", "unanswered", "no_rate"]
STATUS_DTYPE = pl.Enum(STATUS_CATEGORIES)
S_RATED, S_UNANSWERED, S_NO_RATE = 0, 1, 2

# The columns the engine reads, named and typed as in the shared CDR record (cdr.schema); a frame
# with every CDR column (the database's, the spool's) can be passed as it is.
CDR_INPUT_COLUMNS: dict[str, pl.DataType] = {
    name: (pl.Int64() if CDR_TYPES[name][0] is int else pl.String())
    for name in ("call_id", "customer_id", "dialled_number", "start_ms", "answer_ms", "duration_ms", "carrier_id")
}


class RatingInputError(ValueError):
    """CDRs the engine refuses to rate (the whole batch is refused)."""

    def __init__(self, problems: list[tuple[str, list[str]]]):
        self.problems = problems
        lines = []
        for what, ids in problems:
            shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
            lines.append(f"{what}: {shown}")
        super().__init__("CDRs refused:\n  " + "\n  ".join(lines))


# ---------------------------------------------------------------------------------------------
# compilation


@dataclass
class _Group:
    """Decks matched through one segment decomposition."""

    structures: list[int]
    boundaries: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    segpid: I32 = field(default_factory=lambda: np.zeros(0, np.int32))  # [slot * n_seg + seg] -> gpid
    levels: list[I32] = field(default_factory=list)  # trie tables, depth 6, 8, ..., 18
    long_stems: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    segrow: I32 = field(default_factory=lambda: np.zeros(0, np.int32))
    seg_maxlen: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    first_digits: int = FIRST_LEVEL_DIGITS

    @property
    def n_seg(self) -> int:
        return len(self.boundaries)


class CompiledBook:
    """A :class:`RatingBook` turned into flat numpy tables (build once, rate many batches)."""

    def __init__(
        self,
        book: RatingBook,
        *,
        max_group_table: int = MAX_GROUP_TABLE,
        first_level_digits: int | None = None,
    ):
        if first_level_digits is not None and first_level_digits not in (4, 6, 8):
            raise ValueError("first_level_digits must be 4, 6 or 8 (then 2 digits per level up to 18)")
        self._first_digits = first_level_digits
        self.book = book
        names = sorted({a.tariff for a in book.accounts} | {c.tariff for c in book.carriers})
        self.tariff_names = names
        self.tariff_code = {n: i for i, n in enumerate(names)}
        decks = [book.tariffs[n].frame.sort("prefix", "effective_from") for n in names]

        # -- structures: tariffs whose (prefix, window) rows are identical share matching ----
        struct_of: list[int] = []
        struct_frames: list[pl.DataFrame] = []
        seen: dict[int, list[int]] = {}
        for f in decks:
            skel = f.select("prefix", "effective_from", "effective_to")
            h = hash(hashlib.sha1(skel.hash_rows(seed=7).to_numpy().tobytes()).digest())
            found = -1
            for s in seen.get(h, []):
                if struct_frames[s].equals(skel):
                    found = s
                    break
            if found < 0:
                found = len(struct_frames)
                struct_frames.append(skel)
                seen.setdefault(h, []).append(found)
            struct_of.append(found)
        self.struct_of = np.array(struct_of, dtype=np.int64)

        # -- global prefix ids (gpid) and rows -------------------------------------------------
        plen: list[I64] = []
        first_row: list[I64] = []
        nrows: list[I64] = []
        parent: list[I64] = []
        row_from: list[I64] = []
        row_to: list[I64] = []
        self.struct_prefixes: list[list[str]] = []
        self.pid_off: list[int] = []
        self.row_off: list[int] = []
        gp = 0
        gr = 0
        for skel in struct_frames:
            pref = skel.get_column("prefix")
            uniq = pref.unique(maintain_order=True)  # already sorted
            counts = pref.value_counts(sort=False).sort("prefix").get_column("count").to_numpy()
            self.pid_off.append(gp)
            self.row_off.append(gr)
            plist = uniq.to_list()
            self.struct_prefixes.append(plist)
            lens = uniq.str.len_bytes().to_numpy().astype(np.int64)
            plen.append(lens)
            starts = np.zeros(len(plist), dtype=np.int64)
            if len(plist) > 1:
                starts[1:] = np.cumsum(counts[:-1])
            first_row.append(starts + gr)
            nrows.append(counts.astype(np.int64))
            par = _parents(plist)
            parent.append(np.where(par >= 0, par + gp, -1))
            # clipping to [0, T_LIMIT - 1] keeps "from <= t < to" for every accepted t and
            # keeps the packed (rank, from) keys from spilling into the rank bits
            row_from.append(np.clip(skel.get_column("effective_from").to_numpy(), 0, T_LIMIT - 1))
            row_to.append(np.clip(skel.get_column("effective_to").to_numpy(), 0, T_LIMIT - 1))
            gp += len(plist)
            gr += skel.height
        self.plen = _cat(plen)
        self.first_row = _cat(first_row)
        self.nrows = _cat(nrows)
        self.parent = _cat(parent)
        self.row_from = _cat(row_from)
        self.row_to = _cat(row_to)
        multi = np.flatnonzero(self.nrows > 1)
        if len(multi) >= MAX_MULTI_WINDOW_PREFIXES:
            raise ValueError("too many prefixes with several effective windows for one book")
        self.mw_rank = np.full(len(self.plen), -1, dtype=np.int64)
        self.mw_rank[multi] = np.arange(len(multi))
        # key of every row of a multi-window prefix: (rank << 42) | effective_from
        row_rank = np.repeat(self.mw_rank, self.nrows)
        self.mw_rows = np.flatnonzero(row_rank >= 0)
        self.mw_keys = (row_rank[self.mw_rows] << T_BITS) | self.row_from[self.mw_rows]

        # -- per tariff values, aligned with its structure's rows -----------------------------
        val_cols = ("rate", "connect_fee", "initial_increment", "increment", "grace_seconds", "included_seconds")
        values = {c: [] for c in val_cols}  # type: dict[str, list[I64]]
        prefixes: list[str] = []
        dests: list[str] = []
        delta: list[int] = []
        val_off: list[int] = []
        vo = 0
        for f, s in zip(decks, struct_of, strict=True):
            for c in val_cols:
                values[c].append(f.get_column(c).to_numpy().astype(np.int64))
            prefixes.extend(f.get_column("prefix").to_list())
            dests.extend(f.get_column("destination").to_list())
            delta.append(vo - self.row_off[s])
            val_off.append(vo)
            vo += f.height
        if vo == 0:
            # every deck is empty: one dummy value keeps the masked gathers in bounds
            for c in val_cols:
                values[c] = [np.array([1 if c == "increment" else 0], dtype=np.int64)]
            prefixes, dests = [""], [""]
        self.v_rate = _cat(values["rate"])
        self.v_fee60 = _cat(values["connect_fee"]) * 60
        self.v_init = _cat(values["initial_increment"])
        self.v_inc = _cat(values["increment"])
        self.v_grace = _cat(values["grace_seconds"])
        self.v_incl = _cat(values["included_seconds"])
        # Billing plans: the distinct (initial_increment, increment, grace, included) tuples.
        # billed seconds for d <= BILL_CAP come from a small table per plan instead of integer
        # divisions per call (-1 marks a free call: d == 0 or d <= grace); longer calls are
        # computed directly.
        plans, plan_of = _dense_ids([self.v_init, self.v_inc, self.v_grace, self.v_incl])
        self.plans = plans
        self.bill_cap = int(min(BILL_CAP, max(0, MAX_BILL_TABLE // max(len(plans), 1) - 1)))
        dd = np.arange(self.bill_cap + 1, dtype=np.int64)
        table = np.empty((len(plans), self.bill_cap + 1), dtype=np.int64)
        for i, (init, inc, grace, incl) in enumerate(plans.tolist()):
            table[i] = _billed_direct(dd, init, inc, grace, incl)
        self.bill_table = table.reshape(-1)
        # A "term" is a distinct (plan, connect fee) pair: one int64 word per tariff row then
        # holds rate << TERM_BITS | term, so a call needs one gather into the (large) row
        # tables and two into the (small) term tables.
        terms, term_of = _dense_ids([plan_of, self.v_fee60])
        if len(terms) >= 1 << TERM_BITS:
            raise ValueError("too many distinct (billing plan, connect fee) pairs")
        self.term_planoff = (terms[:, 0] * (self.bill_cap + 1)).astype(np.int64)
        self.term_plan = terms[:, 0].astype(np.int64)
        self.term_fee60 = terms[:, 1].astype(np.int64)
        self.v_word = (self.v_rate << TERM_BITS) | term_of.reshape(-1).astype(np.int64)
        self.v_prefix = pl.Series("prefix", prefixes, dtype=pl.String)
        self.v_dest = pl.Series("destination_name", dests, dtype=pl.String)
        self.v_prefix_enum = _as_enum(self.v_prefix)
        self.v_dest_enum = _as_enum(self.v_dest)
        self.t_delta = np.array(delta, dtype=np.int64)

        # -- match groups ------------------------------------------------------------------------
        self.groups: list[_Group] = []
        self.struct_group = np.zeros(len(struct_frames), dtype=np.int64)
        self.struct_slot = np.zeros(len(struct_frames), dtype=np.int64)
        self._build_groups(max_group_table)
        self.t_group = self.struct_group[self.struct_of]
        self.t_segoff = np.array(
            [self.struct_slot[s] * self.groups[self.struct_group[s]].n_seg for s in struct_of], dtype=np.int64
        )

        # -- account levels ------------------------------------------------------------------------
        accs = list(book.accounts)
        self.depth = book.max_depth
        ids = np.array([a.id for a in accs], dtype=np.int64)
        self.acc_lookup = _IdLookup(ids)
        n = len(accs)
        self.lvl_tariff = np.full((self.depth, max(n, 1)), -1, dtype=np.int64)
        self.lvl_account = np.full((self.depth, max(n, 1)), -1, dtype=np.int64)
        self.lvl_decimals = np.zeros((self.depth, max(n, 1)), dtype=np.int64)
        for i, a in enumerate(accs):
            for k, aid in enumerate(book.chains[a.id]):
                acc = book.account_by_id[aid]
                self.lvl_tariff[k, i] = self.tariff_code[acc.tariff]
                self.lvl_account[k, i] = aid
                self.lvl_decimals[k, i] = acc.billing_decimals
        self.tz_names = sorted({a.timezone for a in accs})
        tz_code = {z: i for i, z in enumerate(self.tz_names)}
        self.acc_tz = np.array([tz_code[a.timezone] for a in accs] or [0], dtype=np.int64)
        # A level whose accounts all use the same matching structure as the level below them
        # (derived tariffs without overrides: the usual reseller chain) reuses that level's rows.
        lvl_struct = np.where(self.lvl_tariff >= 0, self.struct_of[np.maximum(self.lvl_tariff, 0)], -1)
        self.lvl_same_rows = [False] + [
            bool(np.all((lvl_struct[k] < 0) | (lvl_struct[k] == lvl_struct[k - 1]))) for k in range(1, self.depth)
        ]
        # ... and when, in addition, every row has the same billing plan in both tariffs (a
        # derived tariff copies its base's increments), the billed seconds too.
        sizes = [f.height for f in decks]

        def same_plans(a: int, b: int) -> bool:
            pa = plan_of[val_off[a] : val_off[a] + sizes[a]]
            pb = plan_of[val_off[b] : val_off[b] + sizes[b]]
            return bool(np.array_equal(pa, pb))

        self.lvl_same_billed = [False] * self.depth
        for k in range(1, self.depth):
            if self.lvl_same_rows[k]:
                pairs = {
                    (int(a), int(b)) for a, b in zip(self.lvl_tariff[k - 1], self.lvl_tariff[k], strict=True) if b >= 0
                }
                self.lvl_same_billed[k] = all(same_plans(a, b) for a, b in pairs)
        self.acc_is_customer = np.array([a.kind == CUSTOMER for a in accs], dtype=np.bool_)
        self.acc_has_bundle = np.zeros(max(n, 1), dtype=np.bool_)
        bundle_accounts = {b.account_id for b in book.bundles}
        for i, a in enumerate(accs):
            self.acc_has_bundle[i] = a.id in bundle_accounts
        carriers = list(book.carriers)
        self.car_lookup = _IdLookup(np.array([c.id for c in carriers], dtype=np.int64))
        self.car_tariff = np.array([self.tariff_code[c.tariff] for c in carriers] or [-1], dtype=np.int64)
        self._slow: dict[int, dict[str, list[int]]] = {}

    def _build_groups(self, budget: int) -> None:
        n_struct = len(self.struct_prefixes)
        current: list[int] = []
        size = 0
        plan: list[list[int]] = []
        for s in range(n_struct):
            n = len(self.struct_prefixes[s])
            # a group's segments are at most 2 * (its distinct prefixes) + 1
            if current and (len(current) + 1) * (2 * (size + n) + 1) > budget:
                plan.append(current)
                current, size = [], 0
            current.append(s)
            size += n
        if current:
            plan.append(current)
        for gi, structs in enumerate(plan):
            g = _Group(structs)
            for slot, s in enumerate(structs):
                self.struct_group[s] = gi
                self.struct_slot[s] = slot
            self._build_group(g)
            self.groups.append(g)

    def _build_group(self, g: _Group) -> None:
        short: set[str] = set()
        long_stems: set[int] = set()
        for s in g.structures:
            for p in self.struct_prefixes[s]:
                if len(p) <= KEY_DIGITS:
                    short.add(p)
                else:
                    long_stems.add(int(p[:KEY_DIGITS]))
        g.long_stems = np.array(sorted(long_stems), dtype=np.int64)
        plist = sorted(short)
        ps = pl.Series(plist, dtype=pl.String)
        lens = ps.str.len_bytes().cast(pl.Int64).to_numpy()
        vals = ps.cast(pl.Int64).to_numpy() if len(plist) else np.zeros(0, np.int64)
        scale = _POW10[KEY_DIGITS - lens] if len(plist) else np.zeros(0, np.int64)
        lo = vals * scale
        hi = (vals + 1) * scale
        end = _POW10[KEY_DIGITS]
        b = np.unique(np.concatenate([np.zeros(1, np.int64), lo, hi[hi < end]]))
        g.boundaries = b
        n_seg = len(b)
        # segment x structure -> gpid of that structure's longest prefix covering the segment
        segpid = np.full(len(g.structures) * n_seg, -1, dtype=np.int32)
        for slot, s in enumerate(g.structures):
            sps = pl.Series(self.struct_prefixes[s], dtype=pl.String)
            slens = sps.str.len_bytes().cast(pl.Int64).to_numpy()
            # digits beyond 18 would overflow; those prefixes are not in the segments anyway
            sints = sps.str.slice(0, KEY_DIGITS).cast(pl.Int64).to_numpy() if len(sps) else slens
            out = segpid[slot * n_seg : (slot + 1) * n_seg]
            for length in sorted({int(x) for x in np.unique(slens) if x <= KEY_DIGITS}, reverse=True):
                local = np.flatnonzero(slens == length)
                svals = sints[local]
                order = np.argsort(svals)
                svals, local = svals[order], local[order]
                stems = b // _POW10[KEY_DIGITS - length]
                pos = np.searchsorted(svals, stems)
                pos_c = np.minimum(pos, len(svals) - 1)
                hit = (svals[pos_c] == stems) & (out < 0)
                out[hit] = (local[pos_c[hit]] + self.pid_off[s]).astype(np.int32)
        g.segpid = segpid
        # segment x structure -> row, when the longest prefix has one window covering all
        # accepted instants (the common case, no window search needed); -1: no prefix at all;
        # -2: look the row up through resolve().
        gp = segpid.astype(np.int64)
        has = gp >= 0
        if not len(self.plen):  # every deck of the book is empty
            g.segrow = np.full(len(segpid), -1, dtype=np.int32)
            g.seg_maxlen = np.zeros(n_seg, dtype=np.int64)
        else:
            gpc = np.where(has, gp, 0)
            simple = (
                has
                & (self.nrows[gpc] == 1)
                & (self.row_from[self.first_row[gpc]] == 0)
                & (self.row_to[self.first_row[gpc]] == T_LIMIT - 1)
            )
            g.segrow = np.where(simple, self.first_row[gpc], np.where(has, -2, -1)).astype(np.int32)
            # longest candidate prefix per segment over all structures: a number with fewer
            # digits may be matched by zero padding only, and goes through resolve()
            lens = np.where(has, self.plen[gpc], 0).reshape(len(g.structures), n_seg)
            g.seg_maxlen = lens.max(axis=0).astype(np.int64)
        # multibit trie over K: an entry resolves to a segment id (>= 0) or a child node (< 0)
        levels: list[I32] = []
        depth = self._first_digits or (FIRST_LEVEL_DIGITS if len(plist) > SMALL_BOOK_PREFIXES else 4)
        g.first_digits = depth
        width = _POW10[KEY_DIGITS - depth]
        entry_starts = np.arange(10**depth, dtype=np.int64) * width
        parents_stems = np.zeros(0, np.int64)
        first = True
        while True:
            if not first:
                entry_starts = (
                    parents_stems[:, None] * 10**NODE_DIGITS + np.arange(10**NODE_DIGITS)[None, :]
                ).ravel() * width
            table = (np.searchsorted(b, entry_starts, side="right") - 1).astype(np.int32)
            inner = b[(b % width) != 0]
            child_stems = np.unique(inner // width)
            if len(child_stems):
                if first:
                    pos = child_stems
                else:
                    node = np.searchsorted(parents_stems, child_stems // 10**NODE_DIGITS)
                    pos = node * 10**NODE_DIGITS + child_stems % 10**NODE_DIGITS
                table[pos] = (-1 - np.arange(len(child_stems))).astype(np.int32)
            levels.append(table)
            if not len(child_stems) or depth >= KEY_DIGITS:
                break
            parents_stems = child_stems
            depth += NODE_DIGITS
            width = _POW10[KEY_DIGITS - depth]
            first = False
        g.levels = levels

    # -- lookups ----------------------------------------------------------------------------------

    def segments(self, g: _Group, key: I64) -> I32:
        """Segment id of every key, through the trie."""
        levels = g.levels
        v = levels[0][key // _POW10[KEY_DIGITS - g.first_digits]]
        neg = v < 0
        if not neg.any():
            return v
        idx = np.flatnonzero(neg)
        node = -1 - v[idx].astype(np.int64)
        depth = g.first_digits
        for table in levels[1:]:
            depth += NODE_DIGITS
            chunk = (key[idx] // _POW10[KEY_DIGITS - depth]) % 10**NODE_DIGITS
            w = table[node * 10**NODE_DIGITS + chunk]
            done = w >= 0
            v[idx[done]] = w[done]
            if done.all():
                break
            keep = ~done
            idx = idx[keep]
            node = -1 - w[keep].astype(np.int64)
        return v

    def resolve(self, gpid: I64, t: I64, ndig: I64) -> I64:
        """Global row for each candidate prefix id: walk to parents until a row's window holds t."""
        grow = np.full(len(gpid), -1, dtype=np.int64)
        idx = np.flatnonzero(gpid >= 0)
        cand = gpid[idx]
        while len(idx):
            tt = t[idx]
            ok = self.plen[cand] <= ndig[idx]
            row = self.first_row[cand]
            nr = self.nrows[cand]
            multi = nr > 1
            if multi.any():
                mi = np.flatnonzero(multi)
                q = (self.mw_rank[cand[mi]] << T_BITS) | tt[mi]
                pos = np.searchsorted(self.mw_keys, q, side="right") - 1
                r = self.mw_rows[np.maximum(pos, 0)]
                # the found row must belong to the same prefix (ranks are contiguous per prefix)
                same = (pos >= 0) & (r >= row[mi]) & (r < row[mi] + nr[mi])
                row[mi] = np.where(same, r, row[mi])
            ok &= (self.row_from[row] <= tt) & (tt < self.row_to[row])
            grow[idx[ok]] = row[ok]
            bad = ~ok
            if not bad.any():
                break
            nxt = self.parent[cand[bad]]
            more = nxt >= 0
            idx = idx[bad][more]
            cand = nxt[more]
        return grow

    def slow_rows(self, struct: int, digits: str, t: int) -> int:
        """Exact matching for one number (used only near 19-20 digit prefixes)."""
        index = self._slow.get(struct)
        if index is None:
            index = {p: [self.pid_off[struct] + i] for i, p in enumerate(self.struct_prefixes[struct])}
            self._slow[struct] = index
        for n in range(min(len(digits), 20), 0, -1):
            hit = index.get(digits[:n])
            if hit is None:
                continue
            gp = hit[0]
            r0 = int(self.first_row[gp])
            for r in range(r0, r0 + int(self.nrows[gp])):
                if self.row_from[r] <= t < self.row_to[r]:
                    return r
        return -1


class _IdLookup:
    """int64 ids -> dense index (-1 when unknown): a direct table when ids are small."""

    def __init__(self, ids: I64):
        self.ids = ids
        self.direct: I64 | None = None
        # a direct table costs 8 bytes per possible id: only when ids are dense enough
        if len(ids) and ids.min() >= 0 and ids.max() < max(1 << 20, 16 * len(ids)):
            table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            table[ids] = np.arange(len(ids))
            self.direct = table
        order = np.argsort(ids)
        self.sorted_ids = ids[order]
        self.order = order

    def __call__(self, q: I64) -> I64:
        if not len(self.ids):
            return np.full(len(q), -1, dtype=np.int64)
        if self.direct is not None:
            inside = (q >= 0) & (q < len(self.direct))
            return np.where(inside, self.direct[np.where(inside, q, 0)], -1)
        pos = np.minimum(np.searchsorted(self.sorted_ids, q), len(self.ids) - 1)
        return np.where(self.sorted_ids[pos] == q, self.order[pos], -1)


def _dense_ids(columns: list[I64]) -> tuple[npt.NDArray[np.int64], I64]:
    """Distinct rows of the given columns (as a 2-D array) and each row's index into them
    (a hash join: np.unique(axis=0) sorts, which is far slower on 10**5 rows)."""
    names = [f"c{i}" for i in range(len(columns))]
    keys = pl.DataFrame({n: c for n, c in zip(names, columns, strict=True)})
    uniq = keys.unique(maintain_order=True).with_row_index("id")
    ids = keys.join(uniq, on=names, how="left", maintain_order="left").get_column("id").cast(pl.Int64)
    return uniq.select(names).to_numpy().astype(np.int64).reshape(-1, len(names)), ids.to_numpy()


def _cat(parts: list[I64]) -> I64:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _parents(plist: list[str]) -> I64:
    """Local index of the longest proper prefix present in the same deck, -1 if none."""
    pos = {p: i for i, p in enumerate(plist)}
    out = np.full(len(plist), -1, dtype=np.int64)
    for i, p in enumerate(plist):
        for n in range(len(p) - 1, 0, -1):
            j = pos.get(p[:n])
            if j is not None:
                out[i] = j
                break
    return out


# ---------------------------------------------------------------------------------------------
# rating


def _billed_direct(d: I64, init: I64 | int, inc: I64 | int, grace: I64 | int, incl: I64 | int) -> I64:
    """The spec's billed seconds for answered seconds ``d``; -1 where the call is free
    (``d == 0``: unanswered, or ``d <= grace``)."""
    b = np.maximum(d - incl, 0)
    blocks = (np.maximum(b - init, 0) + inc - 1) // inc
    billed = np.where(b == 0, 0, init + blocks * inc)
    return np.where((d == 0) | (d <= grace), -1, billed)


@dataclass
class _Batch:
    """Per-CDR inputs (numpy views of the frame) and outputs, shared by the chunk workers;
    each worker reads and writes only its own slice, so no full-size temporaries are made."""

    cust: I64
    start: I64
    answer: I64  # -1 where null
    answered: B8
    dur: I64
    car: I64  # -1 where null
    car_null: B8
    id_null: B8
    num_v: I64  # the dialled number cast to int, -1 when the cast failed
    num_nd: I64  # its length without a leading "+"
    odd_idx: I64  # rows whose key comes from the cleaned string (sorted), and their values
    odd_key: I64
    odd_nd: I64
    slow: B8
    slow_digits: dict[int, str]
    # outputs
    bad: npt.NDArray[np.uint8]  # validation bits per call
    acc: I64
    t: I64
    status: npt.NDArray[np.uint8]
    amounts: I64  # (depth + 1, n): levels then carrier
    found: B8
    accounts: I64  # (depth, n)
    decimals: npt.NDArray[np.int8]  # (depth, n)
    vi0: I64
    billed0: I64


_BAD_REASONS = (
    "unknown customer_id",
    "customer_id is a reseller, not a customer",
    "unknown carrier_id",
    f"duration_ms not in 0..{MAX_DURATION_MS}",
    "start_ms missing or out of range",
    "answer_ms before start_ms",
    "answer_ms out of range",
    "call_id is empty",
)


def _np(s: pl.Series, dtype: type[np.generic]) -> Any:
    a = s.to_numpy()
    return a if a.dtype == dtype else a.astype(dtype)


def rate_frame(
    cdrs: pl.DataFrame,
    book: CompiledBook | RatingBook,
    *,
    bundle_usage: pl.DataFrame | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Rate a frame of CDRs (columns of :data:`CDR_INPUT_COLUMNS`, :mod:`cdr.schema` names).

    Returns one row per CDR, in input order:

    ``call_id, status, prefix, destination_name, billed_seconds, bundle_seconds, bundle_id,
    bundle_month, debit, debit_decimals, carrier_cost, account_l0, amount_l0, decimals_l0, ...``

    Amounts are Int64 minor units (``amount * 10**decimals``); ``carrier_cost`` has
    :data:`~rating.money.CARRIER_DECIMALS` decimals; level 0 is the customer (its amount equals
    ``debit``), level 1 its reseller and so on; absent levels are null.  ``bundle_usage``
    (``bundle_id, bundle_month, used_seconds``) gives the seconds already used before this
    batch.  ``progress(done, total)`` is called as chunks finish.  Raises
    :class:`RatingInputError` if any CDR is invalid: the whole frame is refused.
    """
    cb = book if isinstance(book, CompiledBook) else CompiledBook(book)
    n = cdrs.height
    _check_columns(cdrs)
    num = pl.col("dialled_number").cast(pl.String).fill_null("")
    # one polars pass, columns in parallel; everything after it runs chunk by chunk
    pre = cdrs.select(
        pl.col("customer_id").cast(pl.Int64).fill_null(-1).alias("cust"),
        pl.col("start_ms").cast(pl.Int64).fill_null(-1).alias("start"),
        pl.col("answer_ms").cast(pl.Int64).fill_null(-1).alias("answer"),
        pl.col("answer_ms").is_not_null().alias("answered"),
        pl.col("duration_ms").cast(pl.Int64).fill_null(-1).alias("dur"),
        pl.col("carrier_id").cast(pl.Int64).fill_null(-1).alias("car"),
        pl.col("carrier_id").is_null().alias("car_null"),
        pl.col("call_id").is_null().alias("id_null"),
        # the int cast takes an optional sign and ASCII digits only; leading zeros vanish from
        # the value but not from the length
        num.cast(pl.Int64, strict=False).fill_null(-1).alias("v"),
        (num.str.len_bytes().cast(pl.Int64) - num.str.starts_with("+").cast(pl.Int64)).alias("nd"),
    )
    v = _np(pre.get_column("v"), np.int64)
    nd = _np(pre.get_column("nd"), np.int64)
    # rows the fast cast did not settle: separators, > 18 digits, garbage; cleaned with a regex
    odd = (
        pre.select("v", "nd")
        .with_row_index("i")
        .filter((pl.col("v") < 0) | (pl.col("nd") > KEY_DIGITS))
        .get_column("i")
        .cast(pl.Int64)
        .to_numpy()
    )
    odd_key = np.zeros(len(odd), dtype=np.int64)
    odd_nd = np.zeros(len(odd), dtype=np.int64)
    slow = np.zeros(n, dtype=np.bool_)
    slow_digits: dict[int, str] = {}
    if len(odd):
        cleaned = cdrs.get_column("dialled_number").cast(pl.String).fill_null("").gather(odd)
        cleaned = cleaned.str.replace_all(r"[^0-9]", "")
        odd_nd = cleaned.str.len_bytes().cast(pl.Int64).to_numpy()
        odd_key = cleaned.str.slice(0, KEY_DIGITS).str.pad_end(KEY_DIGITS, "0").cast(pl.Int64).to_numpy()
        # numbers that may reach a 19-20 digit prefix are matched exactly, one by one
        for g in cb.groups:
            if len(g.long_stems):
                hit = (odd_nd > KEY_DIGITS) & np.isin(odd_key, g.long_stems)
                slow[odd[hit]] = True
        if slow.any():
            for i in np.flatnonzero(slow).tolist():
                j = int(np.searchsorted(odd, i))
                slow_digits[i] = str(cleaned[j])
    depth = cb.depth
    bt = _Batch(
        cust=_np(pre.get_column("cust"), np.int64),
        start=_np(pre.get_column("start"), np.int64),
        answer=_np(pre.get_column("answer"), np.int64),
        answered=_np(pre.get_column("answered"), np.bool_),
        dur=_np(pre.get_column("dur"), np.int64),
        car=_np(pre.get_column("car"), np.int64),
        car_null=_np(pre.get_column("car_null"), np.bool_),
        id_null=_np(pre.get_column("id_null"), np.bool_),
        num_v=v,
        num_nd=nd,
        odd_idx=odd,
        odd_key=odd_key,
        odd_nd=odd_nd,
        slow=slow,
        slow_digits=slow_digits,
        bad=np.empty(n, dtype=np.uint8),
        acc=np.empty(n, dtype=np.int64),
        t=np.empty(n, dtype=np.int64),
        status=np.empty(n, dtype=np.uint8),
        amounts=np.empty((depth + 1, n), dtype=np.int64),
        found=np.empty((depth + 1, n), dtype=np.bool_),
        accounts=np.empty((depth, n), dtype=np.int64),
        decimals=np.empty((depth, n), dtype=np.int8),
        vi0=np.empty(n, dtype=np.int64),
        billed0=np.empty(n, dtype=np.int64),
    )

    bounds = [(lo, min(lo + CHUNK, n)) for lo in range(0, n, CHUNK)]
    workers = threads if threads is not None else min(os.cpu_count() or 1, 4)
    done = 0
    if workers <= 1 or len(bounds) <= 1:
        for lo, hi in bounds:
            _rate_chunk(cb, bt, lo, hi)
            done += hi - lo
            if progress:
                progress(done, n)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for (lo, hi), _ in zip(bounds, pool.map(lambda b: _rate_chunk(cb, bt, *b), bounds), strict=True):
                done += hi - lo
                if progress:
                    progress(done, n)

    if n and bt.bad.any():
        ids = cdrs.get_column("call_id").cast(pl.String)
        problems = []
        for bit, what in enumerate(_BAD_REASONS):
            rows = np.flatnonzero(bt.bad & (1 << bit))
            if len(rows):
                listed = [str(x) for x in ids.gather(rows[:50]).to_list()]
                problems.append((what if len(rows) <= 50 else f"{what} ({len(rows)} calls)", listed))
        raise RatingInputError(problems)
    bundle = _apply_bundles(cb, cdrs, bt, bundle_usage)
    return _output(cb, cdrs, bt, bundle)


def _check_columns(cdrs: pl.DataFrame) -> None:
    missing = [c for c in CDR_INPUT_COLUMNS if c not in cdrs.columns]
    if missing:
        raise RatingInputError([(f"missing column(s) {', '.join(missing)}", [])])
    for c, dt in CDR_INPUT_COLUMNS.items():
        have = cdrs.schema[c]
        if dt == pl.Int64() and not have.is_integer() and have != pl.Null():
            raise RatingInputError([(f"column {c} must be an integer column, got {have}", [])])
        if dt == pl.String() and have not in (pl.String(), pl.Categorical(), pl.Null()):
            raise RatingInputError([(f"column {c} must be a string column, got {have}", [])])


def _rate_chunk(cb: CompiledBook, bt: _Batch, lo: int, hi: int) -> None:
    """Validate and rate calls lo..hi at every level; temporaries stay small enough for cache."""
    sl = slice(lo, hi)
    m = hi - lo
    # -- inputs and validation ----------------------------------------------------------------
    acc = cb.acc_lookup(bt.cust[sl])
    answered = bt.answered[sl]
    start = bt.start[sl]
    t = np.where(answered, bt.answer[sl], start)
    dur = bt.dur[sl]
    car_null = bt.car_null[sl]
    car = cb.car_lookup(bt.car[sl])
    bad = (acc < 0).astype(np.uint8)
    accc = np.maximum(acc, 0)
    bad |= (~cb.acc_is_customer[accc] & (acc >= 0)).astype(np.uint8) << 1
    bad |= ((car < 0) & ~car_null).astype(np.uint8) << 2
    bad |= ((dur < 0) | (dur > MAX_DURATION_MS)).astype(np.uint8) << 3
    bad |= ((start < 0) | (start >= T_MAX)).astype(np.uint8) << 4
    bad |= (answered & (t < start)).astype(np.uint8) << 5
    bad |= (answered & (t >= T_MAX)).astype(np.uint8) << 6
    bad |= bt.id_null[sl].astype(np.uint8) << 7
    bt.bad[sl] = bad
    bt.acc[sl] = accc
    bt.t[sl] = t
    # d = ceil(duration_ms / 1000); an unanswered call counts as d = 0
    deff = np.where(answered, (dur + 999) // 1000, 0)
    car_tariff = np.where(car_null | (car < 0), -1, cb.car_tariff[np.maximum(car, 0)])
    ndig = bt.num_nd[sl]
    v = bt.num_v[sl]
    key = v * _POW10[KEY_DIGITS - np.clip(ndig, 0, KEY_DIGITS)]
    a, b = np.searchsorted(bt.odd_idx, [lo, hi])
    if b > a:
        pos = bt.odd_idx[a:b] - lo
        ndig = ndig.copy()
        ndig[pos] = bt.odd_nd[a:b]
        key[pos] = bt.odd_key[a:b]
    slow = bt.slow[sl]
    any_slow = bool(slow.any())
    cap = cb.bill_cap
    dcap = np.minimum(deff, cap)
    big = np.flatnonzero(deff > cap)
    segs: dict[int, tuple[I32, B8]] = {}
    single_group = len(cb.groups) == 1
    prev_row: I64 | None = None
    prev_billed: I64 | None = None
    prev_free: B8 = np.zeros(0, dtype=np.bool_)
    # -- one pass per level: customer, resellers, carrier ---------------------------------------
    for level in range(cb.depth + 1):
        if level < cb.depth:
            tar = cb.lvl_tariff[level][accc]
            bt.accounts[level, sl] = cb.lvl_account[level][accc]
            dec = cb.lvl_decimals[level][accc]
            bt.decimals[level, sl] = dec
        else:
            tar = car_tariff
            dec = None
        has = tar >= 0
        if not has.any():
            bt.found[level, sl] = False
            bt.amounts[level, sl] = 0
            if level == 0:
                bt.vi0[sl] = -1
                bt.billed0[sl] = 0
                bt.status[sl] = S_NO_RATE
            continue
        tar_c = np.maximum(tar, 0)
        if level < cb.depth and cb.lvl_same_rows[level] and prev_row is not None:
            row = prev_row.copy()
            row[~has] = -1
        elif single_group:
            g0 = cb.groups[0]
            if 0 not in segs:
                seg = cb.segments(g0, key)
                segs[0] = (seg, ndig < g0.seg_maxlen[seg])
            seg, short = segs[0]
            off = cb.t_segoff[tar_c] + seg
            row = g0.segrow[off].astype(np.int64)
            row[~has] = -1
            need = (row < -1) | (short & (row >= 0))
            if need.any():
                sub = np.flatnonzero(need)
                gp = g0.segpid[off[sub]].astype(np.int64)
                row[sub] = cb.resolve(gp, t[sub], ndig[sub])
        else:
            row = np.full(m, -1, dtype=np.int64)
            tg = cb.t_group[tar_c]
            for gi, g in enumerate(cb.groups):
                sel = np.flatnonzero(has & (tg == gi))
                if not len(sel):
                    continue
                if gi not in segs:
                    sg = cb.segments(g, key)
                    segs[gi] = (sg, ndig < g.seg_maxlen[sg])
                seg = segs[gi][0]
                gp = g.segpid[cb.t_segoff[tar_c[sel]] + seg[sel]].astype(np.int64)
                row[sel] = cb.resolve(gp, t[sel], ndig[sel])
        if any_slow:
            for j in np.flatnonzero(slow & has).tolist():
                row[j] = cb.slow_rows(int(cb.struct_of[tar_c[j]]), bt.slow_digits[lo + j], int(t[j]))
        prev_row = row
        ok = row >= 0
        vi = np.where(ok, row + cb.t_delta[tar_c], 0)
        word = cb.v_word[vi]
        term = word & ((1 << TERM_BITS) - 1)
        if level < cb.depth and cb.lvl_same_billed[level] and prev_billed is not None:
            billed, free = prev_billed, prev_free
        else:
            billed = cb.bill_table[cb.term_planoff[term] + dcap]
            if len(big):
                p = cb.plans[cb.term_plan[term[big]]]
                billed[big] = _billed_direct(deff[big], p[:, 0], p[:, 1], p[:, 2], p[:, 3])
            free = billed < 0
            np.maximum(billed, 0, out=billed)
            prev_billed, prev_free = billed, free
        word >>= TERM_BITS  # the rate
        amount = word * billed
        amount += cb.term_fee60[term]
        amount = _round(amount, dec)
        amount[free] = 0
        bt.amounts[level, sl] = amount
        bt.found[level, sl] = ok
        if level == 0:
            bt.vi0[sl] = np.where(ok, vi, -1)
            bt.billed0[sl] = billed
            bt.status[sl] = np.where(ok, np.where(deff > 0, S_RATED, S_UNANSWERED), S_NO_RATE)


def _keys_for(bt: _Batch, idx: I64) -> tuple[I64, I64]:
    """(K, ndig) of the given calls, as the chunk workers computed them."""
    ndig = bt.num_nd[idx]
    key = bt.num_v[idx] * _POW10[KEY_DIGITS - np.clip(ndig, 0, KEY_DIGITS)]
    if len(bt.odd_idx):
        pos = np.minimum(np.searchsorted(bt.odd_idx, idx), len(bt.odd_idx) - 1)
        hit = bt.odd_idx[pos] == idx
        ndig = np.where(hit, bt.odd_nd[pos], ndig)
        key = np.where(hit, bt.odd_key[pos], key)
    return key, ndig


def _round(num: I64, dec: npt.NDArray[np.int64] | None) -> I64:
    """Half-up rounding of num / (60 * 10**(6 - dec)), in place; a scalar divisor (fast) when
    all decimals agree, which is the common case."""
    if dec is None:
        den = 60 * 10 ** (MAX_DECIMALS - CARRIER_DECIMALS)
        num += den // 2
        num //= den
        return num
    d0 = int(dec[0]) if len(dec) else 0
    if not len(dec) or (dec == d0).all():
        den = 60 * 10 ** (MAX_DECIMALS - d0)
        num += den // 2
        num //= den
        return num
    den_arr = 60 * _POW10[MAX_DECIMALS - dec]
    return (num + den_arr // 2) // den_arr


# ---------------------------------------------------------------------------------------------
# bundles


@dataclass
class _BundleResult:
    seconds: I64
    bundle_id: pl.Series
    month: pl.Series


def month_starts(tz_name: str, lo_ms: int, hi_ms: int) -> tuple[I64, I64]:
    """UTC instants (ms) at which local calendar months begin, covering [lo_ms, hi_ms], and
    the yyyymm of each.  Computed with zoneinfo so both raters share the same tz rules."""
    tz = ZoneInfo(tz_name)
    first = datetime.fromtimestamp(lo_ms // 1000, tz)
    last = datetime.fromtimestamp(hi_ms // 1000, tz)
    y, m = first.year, first.month
    # one month of margin on each side keeps searchsorted inside the table
    y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    starts: list[int] = []
    labels: list[int] = []
    while (y, m) <= (last.year + (last.month == 12), (last.month % 12) + 1):
        starts.append(_local_month_start_ms(tz, y, m))
        labels.append(y * 100 + m)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return np.array(starts, dtype=np.int64), np.array(labels, dtype=np.int64)


def _local_month_start_ms(tz: ZoneInfo, y: int, m: int) -> int:
    """First UTC millisecond whose local date is in month (y, m)."""
    guess = int(datetime(y, m, 1, tzinfo=tz).timestamp() * 1000)

    # Local midnight may not exist (DST gap) or be ambiguous; settle on the first instant whose
    # local month is (y, m) by stepping to the exact transition.
    def in_month(ms: int) -> bool:
        dt = datetime.fromtimestamp(ms // 1000, tz)
        return (dt.year, dt.month) >= (y, m)

    lo, hi = guess - 2 * 86_400_000, guess + 2 * 86_400_000
    while hi - lo > 1000:
        mid = (lo + hi) // 2
        if in_month(mid):
            hi = mid
        else:
            lo = mid
    # transitions happen on whole seconds
    return hi - hi % 1000 if in_month(hi - hi % 1000) else hi


def _apply_bundles(cb: CompiledBook, cdrs: pl.DataFrame, bt: _Batch, usage: pl.DataFrame | None) -> _BundleResult:
    """Bundle seconds in answer-time order (then call id), per bundle and local calendar month.

    A call takes ``min(billed, allowance - used before it)`` seconds, so one running total per
    (bundle, month) decides every call: no loop.  Only the customer's debit changes."""
    n = cdrs.height
    status, billed0, vi0, debit, t = bt.status, bt.billed0, bt.vi0, bt.amounts[0], bt.t
    seconds = np.zeros(n, dtype=np.int64)
    null_i64 = _nulls(n)
    if not cb.book.bundles:
        return _BundleResult(seconds, null_i64.rename("bundle_id"), null_i64.rename("bundle_month"))
    acc = bt.acc
    cand = np.flatnonzero(cb.acc_has_bundle[acc] & (status == S_RATED) & (billed0 > 0))
    if not len(cand):
        return _BundleResult(seconds, null_i64.rename("bundle_id"), null_i64.rename("bundle_month"))
    key, ndig = _keys_for(bt, cand)
    sub = pl.DataFrame(
        {
            "i": cand,
            "account_id": bt.cust[cand],
            "key": key,
            "ndig": ndig,
            "t": t[cand],
            "call_id": cdrs.get_column("call_id").gather(cand).cast(pl.String),
            "billed": billed0[cand],
            "vi": vi0[cand],
        }
    )
    zones = pl.DataFrame(
        [
            {"account_id": b.account_id, "zone": p, "bundle_id": b.id, "allowance": b.seconds, "len": len(p)}
            for b in cb.book.bundles
            for p in b.zone_prefixes
        ],
        schema={
            "account_id": pl.Int64,
            "zone": pl.String,
            "bundle_id": pl.Int64,
            "allowance": pl.Int64,
            "len": pl.Int64,
        },
    )
    # per (account, zone prefix) the lowest bundle id wins; across lengths the longest wins
    zones = zones.sort("bundle_id").unique(["account_id", "zone"], keep="first", maintain_order=True)
    matched = sub.with_columns(
        pl.lit(None, dtype=pl.Int64).alias("bundle_id"), pl.lit(None, dtype=pl.Int64).alias("allowance")
    )
    digits: pl.Series | None = None
    for length in sorted(zones.get_column("len").unique().to_list(), reverse=True):
        z = zones.filter(pl.col("len") == length)
        if length <= KEY_DIGITS:
            # integer stems: the first `length` digits of the number, if it has that many
            stem: pl.Expr = pl.when(pl.col("ndig") >= length).then(pl.col("key") // int(_POW10[KEY_DIGITS - length]))
            zt = z.select("account_id", pl.col("zone").cast(pl.Int64).alias("stem"), "bundle_id", "allowance")
        else:
            if digits is None:
                digits = (
                    cdrs.get_column("dialled_number")
                    .cast(pl.String)
                    .fill_null("")
                    .gather(cand)
                    .str.replace_all(r"[^0-9]", "")
                )
            stem = pl.lit(digits).str.slice(0, length)
            zt = z.select("account_id", pl.col("zone").alias("stem"), "bundle_id", "allowance")
        zt = zt.rename({"bundle_id": "b", "allowance": "a"})
        matched = (
            matched.with_columns(stem.alias("stem"))
            .join(zt, on=["account_id", "stem"], how="left", maintain_order="left")
            .with_columns(
                pl.coalesce("bundle_id", "b").alias("bundle_id"), pl.coalesce("allowance", "a").alias("allowance")
            )
            .drop("stem", "b", "a")
        )
    matched = matched.filter(pl.col("bundle_id").is_not_null())
    if not matched.height:
        return _BundleResult(seconds, null_i64.rename("bundle_id"), null_i64.rename("bundle_month"))
    # calendar month in the customer's time zone
    months = np.zeros(matched.height, dtype=np.int64)
    tt = matched.get_column("t").to_numpy()
    tzs = cb.acc_tz[bt.acc[matched.get_column("i").to_numpy()]]
    for code in np.unique(tzs).tolist():
        tz_name = cb.tz_names[code]
        sel = np.flatnonzero(tzs == code)
        starts, labels = month_starts(tz_name, int(tt[sel].min()), int(tt[sel].max()))
        months[sel] = labels[np.searchsorted(starts, tt[sel], side="right") - 1]
    matched = matched.with_columns(pl.Series("bundle_month", months, dtype=pl.Int64))
    if usage is not None and usage.height:
        used0 = usage.group_by("bundle_id", "bundle_month").agg(pl.col("used_seconds").sum().alias("used0"))
        matched = matched.join(
            used0.cast({"bundle_id": pl.Int64, "bundle_month": pl.Int64, "used0": pl.Int64}),
            on=["bundle_id", "bundle_month"],
            how="left",
        ).with_columns(pl.col("used0").fill_null(0))
    else:
        matched = matched.with_columns(pl.lit(0, dtype=pl.Int64).alias("used0"))
    # answer-time order, then call id; one running total per (bundle, month)
    matched = matched.sort(["bundle_id", "bundle_month", "t", "call_id"], maintain_order=True).with_columns(
        (pl.col("billed").cum_sum().over("bundle_id", "bundle_month") - pl.col("billed") + pl.col("used0")).alias(
            "before"
        )
    )
    matched = matched.with_columns(
        pl.min_horizontal(pl.col("billed"), (pl.col("allowance") - pl.col("before")).clip(lower_bound=0)).alias(
            "covered"
        )
    )
    idx = matched.get_column("i").to_numpy()
    covered = matched.get_column("covered").to_numpy()
    billed = matched.get_column("billed").to_numpy()
    vi = matched.get_column("vi").to_numpy()
    seconds[idx] = covered
    dec = cb.lvl_decimals[0][np.maximum(acc[idx], 0)]
    den = 60 * _POW10[MAX_DECIMALS - dec]
    partial = (covered > 0) & (covered < billed)
    new = (cb.v_fee60[vi] + cb.v_rate[vi] * (billed - covered) + den // 2) // den
    debit[idx] = np.where(covered == billed, 0, np.where(partial, new, debit[idx]))
    bid = _nulls(n).scatter(idx, matched.get_column("bundle_id")).rename("bundle_id")
    mon = _nulls(n).scatter(idx, matched.get_column("bundle_month")).rename("bundle_month")
    return _BundleResult(seconds, bid, mon)


# ---------------------------------------------------------------------------------------------
# output


def _nulls(n: int) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.Int64, eager=True)


def _output(cb: CompiledBook, cdrs: pl.DataFrame, bt: _Batch, bundle: _BundleResult) -> pl.DataFrame:
    # numpy arrays go in without copies; nulls are applied by one parallel polars pass
    rated = bt.found[0]
    idx0 = pl.Series(np.where(rated, bt.vi0, 0))
    cols: list[pl.Series] = [
        cdrs.get_column("call_id").alias("call_id"),
        pl.Series("status", bt.status).replace_strict(dict(enumerate(STATUS_CATEGORIES)), return_dtype=STATUS_DTYPE),
        _gather_text(cb.v_prefix_enum, idx0).alias("prefix"),
        _gather_text(cb.v_dest_enum, idx0).alias("destination_name"),
        pl.Series("billed_seconds", bt.billed0),
        pl.Series("bundle_seconds", bundle.seconds),
        bundle.bundle_id,
        bundle.month,
        pl.Series("debit", bt.amounts[0]),
        pl.Series("debit_decimals", bt.decimals[0]),
        pl.Series("carrier_cost", bt.amounts[cb.depth]),
        pl.Series("__rated", rated),
        pl.Series("__carrier", bt.found[cb.depth]),
    ]
    exprs = [
        pl.when(pl.col("__rated"))
        .then(pl.col("prefix", "destination_name", "billed_seconds", "bundle_seconds", "debit"))
        .name.keep(),
        pl.when(pl.col("__rated") & pl.col("__carrier")).then(pl.col("carrier_cost")).alias("carrier_cost"),
    ]
    drop = ["__rated", "__carrier"]
    for k in range(cb.depth):
        cols.append(pl.Series(f"account_l{k}", bt.accounts[k]))
        cols.append(pl.Series(f"amount_l{k}", bt.amounts[k]))
        cols.append(pl.Series(f"decimals_l{k}", bt.decimals[k]))
        cols.append(pl.Series(f"__found{k}", bt.found[k]))
        present = pl.col(f"account_l{k}") >= 0
        exprs.append(pl.when(present).then(pl.col(f"account_l{k}", f"decimals_l{k}")).name.keep())
        exprs.append(
            pl.when(present & pl.col("__rated") & pl.col(f"__found{k}"))
            .then(pl.col(f"amount_l{k}"))
            .alias(f"amount_l{k}")
        )
        drop.append(f"__found{k}")
    return pl.DataFrame(cols).with_columns(exprs).drop(drop)


def _gather_text(values: pl.Series, idx: pl.Series) -> pl.Series:
    """Strings by index from an Enum series: gathering integer codes is far cheaper than strings."""
    return values.gather(idx)


def _as_enum(values: pl.Series) -> pl.Series:
    return values.cast(pl.Enum(values.unique(maintain_order=True)))


def levels_frame(rated: pl.DataFrame) -> pl.DataFrame:
    """Long form of the per-level amounts: ``call_id, level, account_id, amount, decimals``
    (the shape of ``rated_levels.csv``), one row per call and level of its account tree, in
    call order then level order."""
    depth = len([c for c in rated.columns if c.startswith("account_l")])
    if depth == 0:
        return pl.DataFrame(
            schema={
                "call_id": pl.String,
                "level": pl.Int8,
                "account_id": pl.Int64,
                "amount": pl.Int64,
                "decimals": pl.Int8,
            }
        )
    present = np.stack([rated.get_column(f"account_l{k}").is_not_null().to_numpy() for k in range(depth)], axis=1)
    # levels are filled from 0 upwards, so the present cells of the (call, level) matrix are
    # exactly the rows wanted, already in call-then-level order: no sort
    flat = np.flatnonzero(present.ravel())
    call = flat // depth
    level = flat % depth

    def interleave(prefix: str, dtype: type[np.generic]) -> tuple[npt.NDArray[np.generic], B8]:
        cols = [rated.get_column(f"{prefix}{k}") for k in range(depth)]
        vals = np.stack([c.fill_null(0).to_numpy().astype(dtype, copy=False) for c in cols], axis=1).ravel()
        nulls = np.stack([c.is_null().to_numpy() for c in cols], axis=1).ravel()
        return vals[flat], nulls[flat]

    acc, _ = interleave("account_l", np.int64)
    amount, amount_null = interleave("amount_l", np.int64)
    dec, _ = interleave("decimals_l", np.int8)
    out = pl.DataFrame(
        {
            "call_id": rated.get_column("call_id").gather(call),
            "level": pl.Series(level.astype(np.int8)),
            "account_id": acc,
            "amount": amount,
            "decimals": dec,
            "__null": amount_null,
        }
    )
    return out.with_columns(pl.when(~pl.col("__null")).then(pl.col("amount")).alias("amount")).drop("__null")


def bundle_consumption(rated: pl.DataFrame) -> pl.DataFrame:
    """Seconds used per ``(bundle_id, bundle_month)`` in a rated frame; feed it back as
    ``bundle_usage`` (summed with earlier usage) when rating the next batch."""
    return (
        rated.filter(pl.col("bundle_id").is_not_null())
        .group_by("bundle_id", "bundle_month")
        .agg(pl.col("bundle_seconds").sum().alias("used_seconds"))
        .sort("bundle_id", "bundle_month")
    )
