;; cmp rax, rbx | setb cl | cmovz rdx, rsi | jl out | inc rax | out: ret
(module
  (type $t0 (func (param i32 i32 i32) (result i32)))
  (type $t1 (func (param f64 i32 f64) (result i32)))
  (type $t2 (func (param f64 i32 i32 i32 f64) (result i32)))
  (type $t3 (func (param f64 f64 i32) (result i32)))
  (type $t4 (func (result i32)))
  (type $t5 (func (param i32 f64)))
  (type $t6 (func (param i32 i32 i32 i32) (result i32)))
  (type $t7 (func (param i64 i64 i64) (result i64)))
  (type $t8 (func (param i32 i32 i32 i32 i32) (result i32)))
  (type $t9 (func (param i32) (result i32)))
  (import "e" "m" (memory $e.m 0))
  (func $f0 (type $t0) (param $p0 i32) (param $p1 i32) (param $p2 i32) (result i32)
    (local $l3 i32) (local $l4 i32) (local $l5 i64) (local $l6 i64) (local $l7 i64) (local $l8 i64) (local $l9 i64) (local $l10 i64) (local $l11 i64) (local $l12 i64) (local $l13 i64) (local $l14 i64) (local $l15 i32) (local $l16 i32) (local $l17 i64) (local $l18 i64) (local $l19 i64) (local $l20 i64) (local $l21 i64) (local $l22 i64) (local $l23 i32) (local $l24 i32) (local $l25 f64) (local $l26 i32) (local $l27 i32) (local $l28 i32)
    i32.const 0
    i64.load offset=268435456 align=1
    local.set $l6
    i32.const 0
    i64.load offset=268435464 align=1
    local.set $l11
    i32.const 0
    i64.load offset=268435472 align=1
    local.set $l14
    i32.const 0
    i64.load offset=268435480 align=1
    local.set $l8
    i32.const 0
    i64.load offset=268435488 align=1
    local.set $l21
    i32.const 0
    i64.load offset=268435504 align=1
    local.set $l13
    local.get $l6
    local.set $l5
    local.get $l8
    local.set $l7
    local.get $l5
    local.get $l7
    i64.sub
    local.set $l9
    local.get $l5
    local.get $l7
    i64.lt_u
    i64.extend_i32_u
    local.set $l10
    local.get $l11
    i64.const -256
    i64.and
    local.get $l10
    i64.const 255
    i64.and
    i64.or
    local.set $l11
    local.get $l13
    local.set $l12
    local.get $l5
    local.get $l7
    i64.eq
    if $I0
      local.get $l12
      local.set $l14
    end
    local.get $l5
    local.get $l7
    i64.lt_s
    if $I1
      i32.const 0
      i32.const 2
      i32.store offset=268435648 align=1
      i32.const 0
      i32.const 8
      i32.store offset=268435652 align=1
      i32.const 0
      i32.const 0
      i32.store offset=268435656 align=1
      i32.const 0
      local.get $l5
      i64.store offset=268435664 align=1
      i32.const 0
      local.get $l7
      i64.store offset=268435672 align=1
      i32.const 0
      local.get $l9
      i64.store offset=268435680 align=1
      i32.const 0
      local.get $l11
      i64.store offset=268435464 align=1
      i32.const 0
      local.get $l14
      i64.store offset=268435472 align=1
      i32.const 0
      f64.const 0x1.0000fp+20 (;=1.04859e+06;)
      f64.store offset=268435688 align=1
      local.get $p2
      i32.const 4
      i32.add
      local.tee $l15
      i32.const 16384
      i32.lt_u
      i32.const 0
      i32.load offset=269484040 align=1
      local.tee $l16
      i32.eqz
      i32.eqz
      i32.and
      i32.const 0
      i32.load offset=268435660 align=1
      i32.eqz
      i32.and
      i32.const 0
      i32.const 1
      i32.store offset=268435708 align=1
      if $I2
        local.get $p0
        local.get $p1
        local.get $l15
        i32.const 9
        return_call_indirect (type $t0)
      end
      local.get $l15
      return
    end
    local.get $l6
    local.set $l17
    i64.const 1
    local.set $l18
    local.get $l5
    local.get $l7
    i64.lt_u
    i64.extend_i32_u
    local.set $l20
    local.get $l17
    local.get $l18
    i64.add
    local.set $l19
    local.get $l19
    local.set $l6
    local.get $l21
    i32.wrap_i64
    local.tee $l23
    i32.const 12
    i32.shr_u
    i32.const 4095
    i32.and
    local.tee $l24
    i32.const 5
    i32.shl
    local.get $p0
    i32.add
    i64.load offset=278921216 align=1
    local.get $l21
    i64.const 7
    i64.add
    i64.const 12
    i64.shr_s
    i64.eq
    if $I3 (result i64)
      local.get $l24
      i32.const 2
      i32.shl
      i32.load offset=281018368 align=1
      local.get $l23
      i32.add
      i64.load align=1
    else
      i32.const 0
      i32.const 4
      i32.store offset=268435648 align=1
      i32.const 0
      i32.const 8
      i32.store offset=268435652 align=1
      i32.const 0
      local.get $l20
      i32.wrap_i64
      i32.store offset=268435656 align=1
      i32.const 0
      local.get $l17
      i64.store offset=268435664 align=1
      i32.const 0
      local.get $l18
      i64.store offset=268435672 align=1
      i32.const 0
      local.get $l19
      i64.store offset=268435680 align=1
      i32.const 0
      local.get $l11
      i64.store offset=268435464 align=1
      i32.const 0
      local.get $l14
      i64.store offset=268435472 align=1
      i32.const 0
      local.get $l6
      i64.store offset=268435456 align=1
      local.get $l21
      f64.convert_i64_s
      i32.const 264
      f64.const 0x1.0000fp+20 (;=1.04859e+06;)
      i32.const 0
      call_indirect $t (type $t1)
      drop
      i32.const 0
      i64.load offset=268435696 align=1
    end
    local.set $l22
    local.get $l22
    i64.const 140737488355328
    i64.add
    i64.const 48
    i64.shr_u
    i64.eqz
    i32.eqz
    if $I4
      i32.const 0
      i32.const 4
      i32.store offset=268435648 align=1
      i32.const 0
      i32.const 8
      i32.store offset=268435652 align=1
      i32.const 0
      local.get $l20
      i32.wrap_i64
      i32.store offset=268435656 align=1
      i32.const 0
      local.get $l17
      i64.store offset=268435664 align=1
      i32.const 0
      local.get $l18
      i64.store offset=268435672 align=1
      i32.const 0
      local.get $l19
      i64.store offset=268435680 align=1
      i32.const 0
      local.get $l11
      i64.store offset=268435464 align=1
      i32.const 0
      local.get $l14
      i64.store offset=268435472 align=1
      i32.const 0
      local.get $l6
      i64.store offset=268435456 align=1
      i32.const 13
      f64.const 0x1.0000fp+20 (;=1.04859e+06;)
      i32.const 4
      call_indirect $t (type $t5)
      unreachable
    end
    local.get $l21
    i64.const 8
    i64.add
    local.set $l21
    i32.const 0
    i32.const 4
    i32.store offset=268435648 align=1
    i32.const 0
    i32.const 8
    i32.store offset=268435652 align=1
    i32.const 0
    local.get $l20
    i32.wrap_i64
    i32.store offset=268435656 align=1
    i32.const 0
    local.get $l17
    i64.store offset=268435664 align=1
    i32.const 0
    local.get $l18
    i64.store offset=268435672 align=1
    i32.const 0
    local.get $l19
    i64.store offset=268435680 align=1
    i32.const 0
    local.get $l11
    i64.store offset=268435464 align=1
    i32.const 0
    local.get $l14
    i64.store offset=268435472 align=1
    i32.const 0
    local.get $l6
    i64.store offset=268435456 align=1
    i32.const 0
    local.get $l21
    i64.store offset=268435488 align=1
    local.get $l22
    f64.convert_i64_s
    local.set $l25
    i32.const 0
    local.get $l25
    f64.store offset=268435688 align=1
    local.get $p2
    i32.const 6
    i32.add
    local.set $l26
    local.get $l22
    i32.wrap_i64
    local.tee $l27
    local.get $l27
    i32.const 12
    i32.shr_u
    i32.xor
    i32.const 65535
    i32.and
    i32.const 4
    i32.shl
    local.set $l27
    local.get $l26
    i32.const 16384
    i32.lt_u
    local.get $l27
    f64.load offset=277872640 align=1
    local.get $l25
    f64.eq
    i32.and
    i32.const 0
    i32.load offset=268435660 align=1
    i32.eqz
    i32.and
    i32.const 0
    i32.const 0
    i32.store offset=268435708 align=1
    if $I5
      local.get $l27
      i32.load offset=277872648 align=1
      local.tee $l28
      i32.const 0
      i32.load offset=268435712 align=1
      i32.const 0
      i32.load offset=268435704 align=1
      local.get $l28
      i32.const 4
      i32.and
      select
      i32.eq
      if $I6
        local.get $p0
        local.get $p1
        local.get $l26
        local.get $l27
        i32.load offset=277872652 align=1
        i32.const 5
        return_call_indirect (type $t6)
      end
      local.get $p0
      local.get $p1
      local.get $l26
      local.get $l27
      i32.const 277872648
      i32.add
      local.get $l27
      i32.load offset=277872652 align=1
      i32.const 7
      return_call_indirect (type $t8)
    end
    local.get $l26
    return
    unreachable)
  (table $t 10 10 funcref)
  (global $g0 funcref (ref.func $f0))
  (export "t" (table $t))
  (export "g0" (global $g0))
  (elem $e0 declare func $f0))
