"""The tabu search's iterations, compiled: the moves of `solver.jobshop.tabu` at native speed.

Why compiled: the search's quality on the larger Brandimarte instances grows with its iterations
(mk10 reached 206 in 7.5 s and 203 in 120 s of the same search in Python), and each iteration is a
few longest-path passes over the disjunctive graph, loops that Python runs a hundred times slower
than machine code. numba compiles these loops once per machine (`cache=True`); the search around
them, its inputs and outputs and its clock, stays in `solver.jobshop.tabu`.

The schedule is held in flat integer arrays: per operation its machine, duration, and its
predecessor and successor on that machine (a linked list per machine, so a move is a few writes and
its undo as many); per machine its first operation and length. `ptime[v, k]` is v's time on machine
k, -1 where k cannot run v. Everything the iterations carry from one call to the next (the current
and best schedules, the tabu lists, the counters in `state`) lives in arrays the caller owns, so the
caller can check its clock between calls of `iterate`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

Array = np.ndarray

#: Candidate moves held at first; the arrays double when a move has more.
FIRST_CAPACITY = 4096

#: Indices into the `state` array shared with the caller.
ITERATION, SINCE_BEST, BEST_MAKESPAN = 0, 1, 2


@njit(cache=True)
def seed_random(seed: int) -> None:
    """Seed the compiled code's random stream (numba keeps its own, per thread)."""
    np.random.seed(seed)


@njit(cache=True)
def longest_paths(
    job_pred: Array,
    job_succ: Array,
    msucc: Array,
    mpred: Array,
    release: Array,
    duration: Array,
    head: Array,
    order: Array,
    indegree: Array,
) -> int:
    """Heads (earliest starts) in `head`, a topological order in `order`; the makespan, or -1 on a cycle.

    `indegree` is scratch space of the same length, passed in so that no call allocates.
    """
    n = head.shape[0]
    count = 0
    for v in range(n):
        head[v] = release[v]
        indegree[v] = 0
        if job_pred[v] >= 0:
            indegree[v] += 1
        if mpred[v] >= 0:
            indegree[v] += 1
        if indegree[v] == 0:
            order[count] = v
            count += 1
    makespan = 0
    i = 0
    while i < count:
        v = order[i]
        i += 1
        end = head[v] + duration[v]
        if end > makespan:
            makespan = end
        # The two successors are written out: through a helper, even inlined, the search ran at half
        # the speed (mk10, 15,000 moves a second against 33,000).
        s = job_succ[v]
        if s >= 0:
            if head[s] < end:
                head[s] = end
            indegree[s] -= 1
            if indegree[s] == 0:
                order[count] = s
                count += 1
        s = msucc[v]
        if s >= 0:
            if head[s] < end:
                head[s] = end
            indegree[s] -= 1
            if indegree[s] == 0:
                order[count] = s
                count += 1
    if count < n:
        return -1
    return makespan


@njit(cache=True)
def _tails(job_succ, msucc, duration, order, tail):
    """Per operation, the longest path from its end to the end of the schedule (order from longest_paths)."""
    n = tail.shape[0]
    for i in range(n - 1, -1, -1):
        v = order[i]
        t = 0
        s = job_succ[v]
        if s >= 0:
            t = tail[s] + duration[s]
        s = msucc[v]
        if s >= 0 and tail[s] + duration[s] > t:
            t = tail[s] + duration[s]
        tail[v] = t


@njit(cache=True, inline="always")
def _nth(sequence: Array, k: int, i: int, skipped: int) -> int:
    """The i-th operation of machine k's list once the one at index `skipped` is taken out (-1: none)."""
    return sequence[k, i + 1 if 0 <= skipped <= i else i]


@njit(cache=True, inline="always")
def _critical_block(sequence, k, position, length, head, tail, duration, makespan):
    """The first and last places of the critical block around `position` on machine k: the run of
    critical operations there, each starting as the one before it ends."""
    first = position
    while first > 0:
        u = sequence[k, first - 1]
        if head[u] + duration[u] != head[sequence[k, first]] or head[u] + duration[u] + tail[u] != makespan:
            break
        first -= 1
    last = position
    while last + 1 < length:
        u = sequence[k, last + 1]
        w = sequence[k, last]
        if head[w] + duration[w] != head[u] or head[u] + duration[u] + tail[u] != makespan:
            break
        last += 1
    return first, last


@njit(cache=True)
def _unlink(v, machine, mpred, msucc, mfirst, mlen):
    """Take v out of its machine's list."""
    p = mpred[v]
    s = msucc[v]
    if p >= 0:
        msucc[p] = s
    else:
        mfirst[machine[v]] = s
    if s >= 0:
        mpred[s] = p
    mpred[v] = -1
    msucc[v] = -1
    mlen[machine[v]] -= 1


@njit(cache=True)
def _link(v, k, after, mpred, msucc, mfirst, mlen):
    """Put v on machine k right after `after` (-1: first)."""
    if after >= 0:
        s = msucc[after]
        msucc[after] = v
    else:
        s = mfirst[k]
        mfirst[k] = v
    mpred[v] = after
    msucc[v] = s
    if s >= 0:
        mpred[s] = v
    mlen[k] += 1


@njit(cache=True)
def _move(v, k, after, machine, duration, ptime, mpred, msucc, mfirst, mlen):
    """Move v onto machine k after `after`; returns (old machine, old predecessor, old duration)."""
    old = machine[v]
    before = mpred[v]
    old_duration = duration[v]
    _unlink(v, machine, mpred, msucc, mfirst, mlen)
    machine[v] = k
    duration[v] = ptime[v, k]
    _link(v, k, after, mpred, msucc, mfirst, mlen)
    return old, before, old_duration


@njit(cache=True)
def _undo(v, old, before, old_duration, machine, duration, mpred, msucc, mfirst, mlen):
    """Put v back where `_move` took it from."""
    _unlink(v, machine, mpred, msucc, mfirst, mlen)
    machine[v] = old
    duration[v] = old_duration
    _link(v, old, before, mpred, msucc, mfirst, mlen)


@njit(cache=True, nogil=True)
def iterate(
    iterations: int,
    job_pred: Array,
    job_succ: Array,
    release: Array,
    ptime: Array,
    machine: Array,
    duration: Array,
    mpred: Array,
    msucc: Array,
    mfirst: Array,
    mlen: Array,
    best_machine: Array,
    best_mpred: Array,
    best_msucc: Array,
    best_mfirst: Array,
    best_mlen: Array,
    tabu_operation: Array,
    state: Array,
    target: int,
    exact_per_iteration: int,
    patience: int,
    operations_per_shake: int,
) -> bool:
    """Run up to `iterations` moves of the search on the arrays in place; False when no move is left.

    One move: every critical operation, on each of its machines, at every place that cannot surely
    close a cycle (but, for an inner operation of a critical block, no other inner place), is scored
    by the longest path through it (from the current heads and tails, those of its own machine taken
    as if it were out); the best scored are evaluated exactly, and the best not forbidden (or better
    than the best schedule found) is made. The moved operation may not move again for a few moves
    (unless to a new best). After `patience` moves without a new best, the search goes back to the
    best schedule and shakes it.

    Before these rules (moves inside a critical block tried, estimates that counted the moved
    operation twice, only its way back to its old place forbidden), the search stalled on its first
    plateau: Fisher and Thompson's 6 x 6 stayed at 71 where the optimum is 55, and Dauzere-Peres 07a
    at 3,240 (best known 2,283), for 20,000 moves without a restart.
    """
    n = machine.shape[0]
    m = ptime.shape[1]
    head = np.zeros(n, np.int64)
    tail = np.zeros(n, np.int64)
    order = np.zeros(n, np.int64)
    trial_head = np.zeros(n, np.int64)
    trial_tail = np.zeros(n, np.int64)
    trial_order = np.zeros(n, np.int64)
    near_head = np.zeros(n, np.int64)
    near_tail = np.zeros(n, np.int64)
    indegree = np.zeros(n, np.int64)
    sequence = np.zeros((m, n), np.int64)
    at = np.zeros(n, np.int64)
    capacity = FIRST_CAPACITY
    est = np.zeros(capacity, np.float64)
    cand_v = np.zeros(capacity, np.int64)
    cand_k = np.zeros(capacity, np.int64)
    cand_after = np.zeros(capacity, np.int64)
    makespan = longest_paths(job_pred, job_succ, msucc, mpred, release, duration, head, order, indegree)
    for _ in range(iterations):
        if state[BEST_MAKESPAN] <= target:
            break
        state[ITERATION] += 1
        iteration = state[ITERATION]
        _tails(job_succ, msucc, duration, order, tail)
        for k in range(m):
            u = mfirst[k]
            i = 0
            while u >= 0:
                sequence[k, i] = u
                at[u] = i
                i += 1
                u = msucc[u]
        critical_count = 0
        count = 0
        noise = np.random.randint(0, 1 << 62)
        for v in range(n):
            if head[v] + duration[v] + tail[v] != makespan:
                continue
            critical_count += 1
            here = machine[v]
            jp = job_pred[v]
            js = job_succ[v]
            ready = head[jp] + duration[jp] if jp >= 0 else release[v]
            after = tail[js] + duration[js] if js >= 0 else 0
            # Moving an inner operation of v's critical block to another inner place keeps the
            # block's length, so it cannot shorten the makespan: those moves are left out.
            block_first, block_last = _critical_block(
                sequence, here, at[v], mlen[here], head, tail, duration, makespan
            )
            inner = block_first < at[v] < block_last
            # The heads after v on its machine and the tails before it, as if v were taken out: the
            # current ones count v, and would make every move of v near its place look worse than it is
            # (Mastrolilli and Gambardella estimate on the graph without v; this corrects its machine).
            # The heads before v and the tails after it do not depend on v.
            before_v = mpred[v]
            end = head[before_v] + duration[before_v] if before_v >= 0 else 0
            for i in range(at[v] + 1, mlen[here]):
                u = sequence[here, i]
                b = release[u]
                if job_pred[u] >= 0:
                    b = head[job_pred[u]] + duration[job_pred[u]]
                near_head[u] = b if b > end else end
                end = near_head[u] + duration[u]
            after_v = msucc[v]
            rest_after = tail[after_v] + duration[after_v] if after_v >= 0 else 0
            for i in range(at[v] - 1, -1, -1):
                u = sequence[here, i]
                r = 0
                if job_succ[u] >= 0:
                    r = tail[job_succ[u]] + duration[job_succ[u]]
                near_tail[u] = r if r > rest_after else rest_after
                rest_after = near_tail[u] + duration[u]
            for k in range(m):
                p = ptime[v, k]
                if p < 0:
                    continue
                original = at[v] if k == here else -1
                length = mlen[k] - (1 if k == here else 0)
                first = 0
                if jp >= 0:
                    limit = head[jp]
                    while first < length:
                        u = _nth(sequence, k, first, original)
                        if head[u] + duration[u] > limit:
                            break
                        first += 1
                    if machine[jp] == k:
                        shifted = at[jp] - (1 if 0 <= original < at[jp] else 0) + 1
                        if shifted > first:
                            first = shifted
                last = length
                if js >= 0:
                    limit = head[js] + duration[js]
                    last = 0
                    while last < length:
                        u = _nth(sequence, k, last, original)
                        if head[u] >= limit:
                            break
                        last += 1
                    if machine[js] == k:
                        shifted = at[js] - (1 if 0 <= original < at[js] else 0)
                        if shifted < last:
                            last = shifted
                for position in range(first, last + 1):
                    if position == original:
                        continue
                    if inner and k == here and block_first < position < block_last:
                        continue
                    begin = ready
                    previous = -1
                    if position > 0:
                        previous = sequence[
                            k, position - 1 + (1 if original >= 0 and position - 1 >= original else 0)
                        ]
                        # (on v's machine, `previous` comes after v exactly when position > original)
                        ends = (
                            near_head[previous] if position > original >= 0 else head[previous]
                        ) + duration[previous]
                        if ends > begin:
                            begin = ends
                    rest = after
                    if position < length:
                        u = _nth(sequence, k, position, original)
                        behind = (near_tail[u] if 0 <= position < original else tail[u]) + duration[u]
                        if behind > rest:
                            rest = behind
                    if count >= capacity:
                        capacity *= 2
                        est = _grown(est, capacity)
                        cand_v = _grown(cand_v, capacity)
                        cand_k = _grown(cand_k, capacity)
                        cand_after = _grown(cand_after, capacity)
                    noise = (noise * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
                    est[count] = begin + p + rest + (noise >> 40) * 2.0**-24  # ties broken at random
                    cand_v[count] = v
                    cand_k[count] = k
                    cand_after[count] = previous
                    count += 1
        if count == 0:
            return False  # nothing can move: one machine per operation and no order to change
        chosen = -1
        chosen_makespan = 0
        chosen_slower = 0
        chosen_critical = 0
        tried = 0
        for _ in range(count):
            if tried >= exact_per_iteration and (chosen >= 0 or tried >= 4 * exact_per_iteration):
                break
            # The next best scored, picked by a scan: a few are tried of hundreds, a sort costs more.
            c = 0
            for x in range(1, count):
                if est[x] < est[c]:
                    c = x
            if est[c] == np.inf:
                break
            est[c] = np.inf
            v = cand_v[c]
            k = cand_k[c]
            old, before, old_duration = _move(
                v, k, cand_after[c], machine, duration, ptime, mpred, msucc, mfirst, mlen
            )
            tm = longest_paths(
                job_pred, job_succ, msucc, mpred, release, duration, trial_head, trial_order, indegree
            )
            if tm < 0:  # the estimate's cycle test is sufficient, not necessary
                _undo(v, old, before, old_duration, machine, duration, mpred, msucc, mfirst, mlen)
                continue
            tried += 1
            forbidden = tabu_operation[v] > iteration
            slower = duration[v] - old_duration
            skip = forbidden and tm >= state[BEST_MAKESPAN]
            if not skip and chosen >= 0:
                skip = tm > chosen_makespan or (tm == chosen_makespan and slower > chosen_slower)
            if not skip:
                # On a plateau, prefer a faster machine for v, then fewer critical operations.
                _tails(job_succ, msucc, duration, trial_order, trial_tail)
                critical_after = 0
                for x in range(n):
                    if trial_head[x] + duration[x] + trial_tail[x] == tm:
                        critical_after += 1
                better = chosen < 0 or (tm, slower, critical_after) < (
                    chosen_makespan,
                    chosen_slower,
                    chosen_critical,
                )
                if better:
                    chosen = c
                    chosen_makespan = tm
                    chosen_slower = slower
                    chosen_critical = critical_after
            _undo(v, old, before, old_duration, machine, duration, mpred, msucc, mfirst, mlen)
        if chosen < 0:
            tabu_operation[:] = 0  # everything near is forbidden: lift the prohibitions and carry on
            continue
        v = cand_v[chosen]
        k = cand_k[chosen]
        _move(v, k, cand_after[chosen], machine, duration, ptime, mpred, msucc, mfirst, mlen)
        spread = critical_count // 2
        if spread < 2:
            spread = 2
        until = iteration + 2 + np.random.randint(0, spread + 1)
        tabu_operation[v] = until  # v may not move again for a while (unless to a new best)
        makespan = longest_paths(job_pred, job_succ, msucc, mpred, release, duration, head, order, indegree)
        if makespan <= state[BEST_MAKESPAN]:
            # A tie replaces the best schedule too, without resetting the patience.
            state[SINCE_BEST] = 0 if makespan < state[BEST_MAKESPAN] else state[SINCE_BEST] + 1
            state[BEST_MAKESPAN] = makespan
            best_machine[:] = machine
            best_mpred[:] = mpred
            best_msucc[:] = msucc
            best_mfirst[:] = mfirst
            best_mlen[:] = mlen
        else:
            state[SINCE_BEST] += 1
        if state[SINCE_BEST] >= patience:
            # Back to the best schedule, shaken by a few random feasible moves.
            machine[:] = best_machine
            mpred[:] = best_mpred
            msucc[:] = best_msucc
            mfirst[:] = best_mfirst
            mlen[:] = best_mlen
            for x in range(n):
                duration[x] = ptime[x, machine[x]]
            shake = n // operations_per_shake
            if shake < 2:
                shake = 2
            _shake(shake, job_pred, job_succ, release, ptime, machine, duration, mpred, msucc, mfirst, mlen)
            tabu_operation[:] = 0
            state[SINCE_BEST] = 0
            makespan = longest_paths(
                job_pred, job_succ, msucc, mpred, release, duration, head, order, indegree
            )
    return True


@njit(cache=True)
def _grown(values: Array, capacity: int) -> Array:
    """`values` copied into a new array of `capacity` (larger)."""
    grown = np.zeros(capacity, values.dtype)
    grown[: values.shape[0]] = values
    return grown


@njit(cache=True)
def _shake(moves, job_pred, job_succ, release, ptime, machine, duration, mpred, msucc, mfirst, mlen):
    """Make `moves` random acyclic moves (any operation, any of its machines, any place)."""
    n = machine.shape[0]
    m = ptime.shape[1]
    head = np.zeros(n, np.int64)
    order = np.zeros(n, np.int64)
    indegree = np.zeros(n, np.int64)
    for _ in range(moves * 4):
        if moves <= 0:
            break
        v = np.random.randint(0, n)
        options = 0
        for k in range(m):
            if ptime[v, k] >= 0:
                options += 1
        pick = np.random.randint(0, options)
        k = 0
        for j in range(m):
            if ptime[v, j] >= 0:
                if pick == 0:
                    k = j
                    break
                pick -= 1
        length = mlen[k] - (1 if machine[v] == k else 0)
        position = np.random.randint(0, length + 1)
        after = -1
        u = mfirst[k]
        i = 0
        while i < position:
            if u == v:
                u = msucc[u]
                continue
            after = u
            u = msucc[u]
            i += 1
        old, before, old_duration = _move(v, k, after, machine, duration, ptime, mpred, msucc, mfirst, mlen)
        if longest_paths(job_pred, job_succ, msucc, mpred, release, duration, head, order, indegree) < 0:
            _undo(v, old, before, old_duration, machine, duration, mpred, msucc, mfirst, mlen)
            continue
        moves -= 1
