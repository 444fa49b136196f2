"""What a frame's code lets a pickled frame resume with (CPython 3.11 bytecode).

A frame record in a pickle says where its frame goes on and what its locals and value stack
hold. CPython's evaluation loop trusts the value stack: FOR_ITER calls its iterator's
tp_iternext directly, LIST_APPEND appends to its list without looking at its type, RERAISE reads
its exception's traceback field, MAKE_FUNCTION takes its code object as it is. A damaged or
hand-made record that puts something else there would crash the interpreter. So, for every code
object, this module works out:

- where a frame of it can go on: after a call that returns into it (CALL, CALL_FUNCTION_EX, a
  FOR_ITER or SEND driving a generator, BEFORE_WITH and WITH_EXCEPT_START calling __enter__ and
  __exit__, BINARY_SUBSCR calling __getitem__), after a YIELD_VALUE (a suspended generator), at
  the start of a created generator, or at an instruction boundary (a tasklet interrupted by
  run(timeout)) that no EXTENDED_ARG prefix leads into;
- what each value-stack slot must hold there, by what put it there (GET_ITER: an iterator;
  PUSH_EXC_INFO: an exception; an exception handler: the exception and the offset it re-raises
  at) and by what takes it later without looking (FOR_ITER: an iterator; LIST_APPEND: a list;
  PREP_RERAISE_STAR: the list of exceptions raised in except* clauses; MAKE_FUNCTION: nothing a
  pickle may give, so no frame resumes with those slots live).

frame_check.cpp checks every record against these tables before anything runs it.
"""
import dis
import opcode

_OP = opcode.opmap
_CACHES = opcode._inline_cache_entries
_NO_FALLTHROUGH = {_OP[n] for n in ("RETURN_VALUE", "RAISE_VARARGS", "RERAISE", "JUMP_FORWARD",
                                    "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT")}
_JUMPS = set(opcode.hasjrel) | set(opcode.hasjabs)

# Slot kinds. By what put the value there: "o" any object, "n" an object or NULL (the slot
# LOAD_METHOD, LOAD_GLOBAL and PUSH_NULL leave for a method's self), "i" an iterator, "x" an
# exception or None (the exception state PUSH_EXC_INFO saves), "e" an exception, "l" an int, the
# instruction offset a handler re-raises at. By what takes it later: "i" too, "L" a list, "S" a
# set, "D" a dict, "g" a list of exceptions or None (except*), "s" a str, "!" nothing a pickle
# may give.

# Instructions that push nothing (they pop what their stack effect says).
_PUSH_NOTHING = {
    "CACHE", "NOP", "RESUME", "EXTENDED_ARG", "COPY_FREE_VARS", "MAKE_CELL", "KW_NAMES",
    "POP_TOP", "RETURN_VALUE", "IMPORT_STAR", "SETUP_ANNOTATIONS", "POP_EXCEPT", "PRINT_EXPR",
    "STORE_NAME", "DELETE_NAME", "STORE_ATTR", "DELETE_ATTR", "STORE_GLOBAL", "DELETE_GLOBAL",
    "STORE_FAST", "DELETE_FAST", "STORE_DEREF", "DELETE_DEREF", "STORE_SUBSCR", "DELETE_SUBSCR",
    "JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "RAISE_VARARGS", "RERAISE",
    "LIST_APPEND", "SET_ADD", "MAP_ADD", "LIST_EXTEND", "SET_UPDATE", "DICT_MERGE",
    "DICT_UPDATE", "END_ASYNC_FOR",
} | {name for name in _OP if name.startswith("POP_JUMP_")}

# Instructions that pop nothing and push one value (some of them read what is below).
_PUSH_ONE_POP_NONE = {
    "LOAD_ASSERTION_ERROR", "LOAD_BUILD_CLASS", "LOAD_CONST", "LOAD_NAME", "LOAD_FAST",
    "LOAD_CLOSURE", "LOAD_DEREF", "LOAD_CLASSDEREF", "IMPORT_FROM", "GET_LEN", "MATCH_MAPPING",
    "MATCH_SEQUENCE", "MATCH_KEYS", "WITH_EXCEPT_START", "GET_ANEXT", "RETURN_GENERATOR",
}

# Instructions whose Python-level call returns into the frame, and where it goes on then.
_CALLS_INTO_PYTHON = {"CALL", "CALL_FUNCTION_EX", "FOR_ITER", "SEND", "BEFORE_WITH",
                      "WITH_EXCEPT_START", "BINARY_SUBSCR"}


def _pops_pushes(instr, jump):
    """(values popped, values pushed) by `instr` when it falls through or jumps."""
    name, arg = instr.opname, instr.arg or 0
    if name == "PRECALL":
        return 0, 0
    if name == "CALL":
        return arg + 2, 1
    if name == "CALL_FUNCTION_EX":
        return 3 + (arg & 1), 1
    if name == "FOR_ITER":  # the iterator stays and the next value goes on top, or both go
        return (1, 0) if jump else (0, 1)
    if name == "SEND":  # [receiver, value]: what it yields replaces the value; what it returns,
        return (2, 1) if jump else (1, 1)  # both
    if name in ("JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"):
        return (0, 0) if jump else (1, 0)
    if name in ("PUSH_EXC_INFO", "BEFORE_WITH", "BEFORE_ASYNC_WITH", "LOAD_METHOD"):
        return 1, 2
    if name == "LOAD_GLOBAL":
        return 0, 2 if arg & 1 else 1
    if name == "PUSH_NULL":
        return 0, 1
    if name == "UNPACK_SEQUENCE":
        return 1, arg
    if name == "UNPACK_EX":
        return 1, (arg & 0xFF) + (arg >> 8) + 1
    if name == "CHECK_EXC_MATCH":  # the exception stays; the type becomes the answer
        return 1, 1
    if name == "CHECK_EG_MATCH":  # [exception, type] -> [rest, match]
        return 2, 2
    if name in _PUSH_ONE_POP_NONE:
        return 0, 1
    if instr.opcode >= opcode.HAVE_ARGUMENT:
        effect = dis.stack_effect(instr.opcode, arg, jump=jump)
    else:
        effect = dis.stack_effect(instr.opcode)
    if name in _PUSH_NOTHING:
        return -effect, 0
    return 1 - effect, 1


def _pushed(instr, jump):
    """The kinds `instr` pushes."""
    name = instr.opname
    if name in ("GET_ITER", "GET_YIELD_FROM_ITER"):
        return "i"
    if name == "PUSH_EXC_INFO":
        return "xe"
    if name == "LOAD_METHOD" or (name == "LOAD_GLOBAL" and (instr.arg or 0) & 1):
        return "no"
    if name == "PUSH_NULL":
        return "n"
    return "o" * _pops_pushes(instr, jump)[1]


def _after(instr, stack, jump):
    """The slot kinds (by what put each value there) after `instr`, or None if `stack` cannot
    be what it starts with."""
    name, arg = instr.opname, instr.arg or 0
    if name in ("SWAP", "COPY"):
        if not 0 < arg <= len(stack):
            return None
        if name == "COPY":
            return stack + stack[-arg]
        s = list(stack)
        s[-1], s[-arg] = s[-arg], s[-1]
        return "".join(s)
    pops, _ = _pops_pushes(instr, jump)
    if pops > len(stack):
        return None
    if name == "CHECK_EG_MATCH":  # [exception, type] -> [rest (None or an exception), match]
        return stack[:len(stack) - 2] + "xo"
    return stack[:len(stack) - pops] + _pushed(instr, jump)


def _merge_kind(x, y):
    """The kind of a slot reached with kinds x and y on two paths, or None if they conflict. The
    result is checked for every value that may be there: a special kind wins over "any
    object", and "any object" over "object or NULL"."""
    if x == y:
        return x
    if {x, y} == {"x", "e"}:
        return "x"  # PUSH_EXC_INFO keeps an exception or None where the exception was
    if {x, y} == {"o", "n"}:
        return "o"
    if x in "on":
        return y
    if y in "on":
        return x
    return None


def _merge(a, b):
    if a == b:
        return a
    if len(a) != len(b):
        return None
    out = []
    for x, y in zip(a, b):
        kind = _merge_kind(x, y)
        if kind is None:
            return None
        out.append(kind)
    return "".join(out)


def _handlers(code):
    return [(e.start, e.end, e.target, e.depth, e.lasti) for e in dis._parse_exception_table(code)]


def _successors(instr, n, instructions, handlers):
    """(offset, jump, handler depth or None) of each place execution can go after `instr`."""
    out = []
    for start, end, target, depth, lasti in handlers:
        if start <= instr.offset < end:
            out.append((target, None, (depth, lasti)))
    if instr.opcode in _JUMPS:
        out.append((instr.argval, True, None))
    if instr.opcode not in _NO_FALLTHROUGH and n + 1 < len(instructions):
        out.append((instructions[n + 1].offset, False, None))
    return out


def _produced_kinds(instructions, at, handlers):
    """{offset: kinds of the value stack before that instruction, by what put each there}."""
    states = {}
    work = [(0, "")]
    while work:
        offset, stack = work.pop()
        if stack is None or offset not in at:
            continue
        old = states.get(offset)
        if old is not None:
            merged = _merge(old, stack)
            if merged is None or merged == old:
                continue  # nothing new, or paths that disagree: the first one stands
            stack = merged
        states[offset] = stack
        n = at[offset]
        instr = instructions[n]
        for target, jump, handler in _successors(instr, n, instructions, handlers):
            if handler is not None:
                depth, lasti = handler
                if depth <= len(stack):
                    work.append((target, stack[:depth] + ("l" if lasti else "") + "e"))
            else:
                work.append((target, _after(instr, stack, jump)))
    return states


def _own_requirements(instr, depth):
    """{slot: kind} that `instr` takes from the value stack (of `depth` slots) without looking."""
    name, arg = instr.opname, instr.arg or 0
    top = depth - 1
    if name == "FOR_ITER":
        return {top: "i"}
    if name in ("LIST_APPEND", "LIST_EXTEND"):
        return {top - arg: "L"}
    if name in ("SET_ADD", "SET_UPDATE"):
        return {top - arg: "S"}
    if name in ("DICT_UPDATE", "DICT_MERGE"):
        return {top - arg: "D"}
    if name == "MAP_ADD":
        return {top - 1 - arg: "D"}
    if name == "LIST_TO_TUPLE":
        return {top: "L"}
    if name == "PREP_RERAISE_STAR":
        return {top: "g", top - 1: "e"}
    if name == "RERAISE":
        return {top: "e", top - arg: "l"} if arg else {top: "e"}
    if name in ("WITH_EXCEPT_START", "END_ASYNC_FOR", "PUSH_EXC_INFO"):
        return {top: "e"}
    if name == "POP_EXCEPT":
        return {top: "x"}
    if name == "MAKE_FUNCTION":  # a code object, its closure's cells, its defaults
        return {top - i: "!" for i in range(1 + bin(arg & 0x0F).count("1"))}
    if name in ("MATCH_CLASS", "MATCH_KEYS", "BUILD_CONST_KEY_MAP"):  # a tuple of names
        return {top: "!"}
    if name == "FORMAT_VALUE" and arg & 0x04:  # a format spec
        return {top: "s"}
    return {}


def _meet(a, b):
    """Both requirements a and b at once."""
    if a == "o" or a == b:
        return b
    if b == "o":
        return a
    if {a, b} == {"x", "e"}:
        return "e"
    if {a, b} == {"L", "g"}:
        return "g"
    return "!"


def _required_kinds(instructions, handlers, produced):
    """{offset: kinds the values on the stack before that instruction must have for what takes
    them later without looking}; "o" where nothing does."""
    required = {offset: ["o"] * len(stack) for offset, stack in produced.items()}
    changed = True
    while changed:
        changed = False
        for n in range(len(instructions) - 1, -1, -1):
            instr = instructions[n]
            need = required.get(instr.offset)
            if need is None:
                continue
            depth = len(need)
            new = list(need)
            for slot, kind in _own_requirements(instr, depth).items():
                if 0 <= slot < depth:
                    new[slot] = _meet(new[slot], kind)
            for target, jump, handler in _successors(instr, n, instructions, handlers):
                later = required.get(target)
                if later is None:
                    continue
                if handler is not None:
                    keep, moved = min(handler[0], depth), {}
                elif instr.opname in ("SWAP", "COPY"):
                    arg = instr.arg or 0
                    if not 0 < arg <= depth:
                        continue
                    keep = depth
                    if instr.opname == "SWAP":
                        moved = {depth - 1: depth - arg, depth - arg: depth - 1}
                    else:
                        moved = {depth - arg: depth}  # the copy's needs are the original's
                elif instr.opname == "CHECK_EG_MATCH":
                    # What does not match stays where it was: the value under test becomes the
                    # rest, which the clauses after it test again and an except* statement
                    # collects for PREP_RERAISE_STAR.
                    keep, moved = depth - 1, {}
                else:
                    keep, moved = depth - _pops_pushes(instr, jump)[0], {}
                if instr.opname == "LIST_APPEND" and handler is None:
                    # What goes into the list of an except* statement must be an exception or
                    # None, as the list's items.
                    target_slot = depth - 1 - (instr.arg or 0)
                    if 0 <= target_slot < len(later) and later[target_slot] == "g":
                        new[depth - 1] = _meet(new[depth - 1], "x")
                for slot in range(max(keep, 0)):
                    if slot < len(later) and slot not in moved:
                        new[slot] = _meet(new[slot], later[slot])
                for slot, source in moved.items():
                    if source < len(later):
                        new[slot] = _meet(new[slot], later[source])
                        if instr.opname == "COPY" and slot < len(later):
                            new[slot] = _meet(new[slot], later[slot])
            if new != need:
                required[instr.offset] = new
                changed = True
    return required


def _combine(produced, required):
    """One kind that says both what put a value there and what takes it later."""
    if required == "o" or produced == required:
        return produced
    if produced in "on":
        return required
    if {produced, required} == {"x", "e"}:
        return "e"
    return "!"


_table_cache = {}


def slot_kinds(code):
    """The resume table of `code`: {instruction index (in code units): slot kinds of the value
    stack before it}, and under string keys: "calls", {index a call returns to: the index where
    the frame goes on instead when the generator it iterates or delegates to returns (-1 for
    calls)}; "steps", the indices a frame may be interrupted at; "yields", the indices after a
    YIELD_VALUE; "start", where a created generator starts."""
    result = _table_cache.get(code)
    if result is not None:
        return result
    instructions = list(dis.get_instructions(code))
    at = {i.offset: n for n, i in enumerate(instructions)}
    handlers = _handlers(code)
    produced = _produced_kinds(instructions, at, handlers)
    required = _required_kinds(instructions, handlers, produced)
    result = {}
    for offset, stack in produced.items():
        need = required[offset]
        result[offset // 2] = "".join(_combine(p, r) for p, r in zip(stack, need))
    calls, steps, yields, start = {}, set(), set(), -1
    started = False
    for n, instr in enumerate(instructions):
        index = instr.offset // 2
        started = started or instr.opname == "RESUME"
        after = _next_index(code, index)
        if instr.opname in _CALLS_INTO_PYTHON:
            alt = instr.argval // 2 if instr.opname in ("FOR_ITER", "SEND") else -1
            calls[after] = alt
        elif instr.opname == "YIELD_VALUE":
            yields.add(after)
        elif instr.opname == "RETURN_GENERATOR":
            start = after
        # Not inside an instruction, nor in the prologue before RESUME, which sets up cells
        # and free variables from the function a restored frame does not have.
        if started and (n == 0 or instructions[n - 1].opname != "EXTENDED_ARG"):
            steps.add(index)
    result["calls"] = calls
    result["steps"] = frozenset(steps)
    result["yields"] = frozenset(yields)
    result["start"] = start
    if len(_table_cache) >= 4096:
        _table_cache.clear()
    _table_cache[code] = result
    return result


def opcode_tables():
    """(deopt, caches): for each instruction number, its base instruction (specialised ones
    map to theirs), and the inline cache entries after each base instruction; what CPython's
    _PyOpcode_Deopt and _PyOpcode_Caches hold, for the extension's C++ to read bytecode with."""
    deopt = bytearray(range(256))
    for specialized, base in dis.deoptmap.items():
        deopt[dis._all_opmap[specialized]] = opcode.opmap[base]
    caches = bytearray(256)
    for op, n in enumerate(_CACHES):
        caches[op] = n
    return bytes(deopt), bytes(caches)


_instruction_cache = {}


def instruction(code, index):
    """The instruction at `index` (code units), with its full argument, or None."""
    table = _instruction_cache.get(code)
    if table is None:
        table = {i.offset // 2: i for i in dis.get_instructions(code)}
        if len(_instruction_cache) >= 4096:
            _instruction_cache.clear()
        _instruction_cache[code] = table
    return table.get(index)


def call_site(code, index):
    """For a frame stopped inside a C call at instruction `index`: (stack depth, mode, slot,
    resume index, stack entries the call consumes, alternative resume index, whether the
    alternative pushes a value), where mode 1 is a call whose [method or NULL, callable or self]
    pair starts at the slot, 2 a CALL_FUNCTION_EX whose callable is the slot, 3 a FOR_ITER over
    the iterator in the slot, 4 a SEND to the receiver in the slot. The alternative is where the
    frame goes on when the generator it iterates over or delegates to returns instead of
    yielding (FOR_ITER: without the iterator; SEND: with the return value instead of the
    receiver), -1 for calls; 5 a BEFORE_WITH, whose __exit__ method is in the slot while
    __enter__ runs, 6 a WITH_EXCEPT_START calling the __exit__ method in the slot. Depth -1 if
    this is no call that can be resumed or the analysis has no state there."""
    stack = slot_kinds(code).get(index)
    instr = instruction(code, index)
    after = _resume_after_call(code, index)
    if stack is None or instr is None or after is None:
        return -1, 0, -1, -1, 0, -1, 0
    depth = len(stack)
    resume, consumed = after
    name, arg = instr.opname, instr.arg or 0
    if name in ("PRECALL", "CALL"):
        return depth, 1, depth - arg - 2, resume, consumed, -1, 0
    if name == "CALL_FUNCTION_EX":
        return depth, 2, depth - 2 - (arg & 1), resume, consumed, -1, 0
    if name == "FOR_ITER":
        return depth, 3, depth - 1, resume, consumed, instr.argval // 2, 0
    if name == "SEND":
        return depth, 4, depth - 2, resume, consumed, instr.argval // 2, 1
    if name == "BEFORE_WITH":  # __enter__ runs: the manager's slot holds its bound __exit__
        return depth, 5, depth - 1, resume, consumed, -1, 0
    return depth, 6, depth - 4, resume, consumed, -1, 0  # WITH_EXCEPT_START: __exit__(exc...)


def _next_index(code, index):
    """Index of the instruction after the one at `index` and its inline caches."""
    return index + 1 + _CACHES[code.co_code[2 * index]]


def _resume_after_call(code, index):
    """Where a frame continues once the call made by its instruction at `index` returns, and
    how many stack entries the call consumes; None if that instruction is no call."""
    instr = instruction(code, index)
    if instr is None:
        return None
    name, arg = instr.opname, instr.arg or 0
    if name == "PRECALL":
        call = _next_index(code, index)
        after = instruction(code, call)
        if after is None or after.opname != "CALL":
            return None
        return _next_index(code, call), arg + 2
    if name == "CALL":
        return _next_index(code, index), arg + 2
    if name == "CALL_FUNCTION_EX":
        return index + 1, 3 + (arg & 1)
    if name == "FOR_ITER":
        return index + 1, 0
    if name == "SEND":  # the value sent is consumed; the receiver stays under what it yields
        return index + 1, 1
    if name in ("BEFORE_WITH", "WITH_EXCEPT_START"):  # the result is pushed on what is there
        return index + 1, 0
    return None


_keeps_self_cache = {}


def keeps_self(code):
    """Whether a method of this code never rebinds its first local (self): then an __init__
    frame's self is what the class call it runs in returns."""
    kept = _keeps_self_cache.get(code)
    if kept is None:
        kept = not any(i.opname in ("STORE_FAST", "DELETE_FAST") and i.arg == 0
                       for i in dis.get_instructions(code))
        if len(_keeps_self_cache) >= 4096:
            _keeps_self_cache.clear()
        _keeps_self_cache[code] = kept
    return kept
