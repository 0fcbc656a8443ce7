#!/usr/bin/env bash
# Fleet drift benchmark: the seeds' storage matrix, measured. Every strategy
# runs in this one invocation, each on its own loop-mounted filesystem so
# statvfs measures only it.
#
#   bash bench/fleet.sh [N]        (N bots per strategy, default 12)
#   OWN6=20 OWN24=20 STRATEGIES="rsync btrfs-snapshot ..." bash bench/fleet.sh
#       (MiB of each bot's own files per phase; a subset of the strategies)
#   WORKLOAD=dpkg bash bench/fleet.sh
#       (every bot runs the real dpkg in both phases and writes SMALL small
#       files of its own per phase; own files default to 40 MiB per phase)
#
# Base: Debian bookworm minbase (debootstrap, cached). Phases:
#   day 1    provision N bots
#   month 6  every bot installs the same real security updates (the .debs apt
#            would upgrade the base with) and writes 20 MB of its own
#   year 2   every bot installs the same ~400 MB of packages (python3, gcc,
#            g++, make, git, curl with their dependencies) and 20 MB more of its own
# botyard runs with each driver: overlay (XFS), copy on XFS (reflinks) and
# copy on btrfs (snapshots of the image's root), the choice for pods with
# user namespaces.
# Workload `same` (the default): in each strategy the first bot runs the real
# `dpkg -i` in a chroot (that is the "apt works" column); the others receive
# exactly the files that dpkg run wrote (captured once from a reference
# root). Workload `dpkg`: every bot runs dpkg itself, so each keeps its own
# dpkg logs, status backups and directory mtimes, and writes SMALL files of
# 1-8 KiB of its own per phase besides its own big file.
# The dedupe baselines run rmlint over the whole fleet after each phase:
# `rsync+rmlint` runs the shell script rmlint generates (a process per
# duplicate), `rsync+dedupe` takes rmlint's duplicate sets and issues
# FIDEDUPERANGE itself in batches (bench/dedupe.py), as a careful operator
# would. The physical minimum is measured from each botyard strategy's own
# bots at year 2 (bench/minimum.py), with where its bytes go.
# Results go to bench/results/fleet.md (fleet-dpkg.md for WORKLOAD=dpkg), or
# to the file RESULTS names (a subset run that should not replace them).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-12}
WORKLOAD=${WORKLOAD:-same}
case $WORKLOAD in
  same) OWN6=${OWN6:-20}; OWN24=${OWN24:-20}; SMALL=${SMALL:-0}; OUT=bench/results/fleet.md ;;
  dpkg) OWN6=${OWN6:-40}; OWN24=${OWN24:-40}; SMALL=${SMALL:-300}; OUT=bench/results/fleet-dpkg.md ;;
  *) echo "fleet: WORKLOAD is same or dpkg, not $WORKLOAD" >&2; exit 2 ;;
esac
OUT=${RESULTS:-$OUT}
ALL="rsync rsync+rmlint rsync+dedupe btrfs-snapshot overlay-upper selective-sync botyard-overlay botyard-overlay-ext4 botyard-copy botyard-copy-btrfs"
STRATEGIES=${STRATEGIES:-$ALL}
for s in $STRATEGIES; do
  case " $ALL " in *" $s "*) ;; *) echo "fleet: unknown strategy $s (one of: $ALL)" >&2; exit 2 ;; esac
done
W=$PWD/bench/cache/fleet
DEDUPE=$PWD/bench/dedupe.py
cleanup() {
  # Everything mounted below the work dir, deepest first.
  for m in $(awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
trap 'echo "fleet: failed at line $LINENO" >&2; cleanup' ERR
# The loop images hold tens of GB once written: gone with the run.
trap 'cleanup; rm -f "$W"/*.img' EXIT
cleanup; rm -rf "$W"; mkdir -p "$W"

# --- the packages and the exact files they write -------------------------
DEBS6=$W/debs-month6; DEBS24=$W/debs-year2; mkdir -p "$DEBS6/partial" "$DEBS24/partial"
APT=(apt-get -q -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" --download-only -y)
"${APT[@]}" -o "Dir::Cache::archives=$DEBS6" upgrade >/dev/null
"${APT[@]}" -o "Dir::Cache::archives=$DEBS24" --no-install-recommends install python3 gcc g++ make git curl >/dev/null
# dpkg alone cannot order pre-dependencies (apt does): a second pass
# installs what the first had to leave; then nothing may be half-installed.
INSTALL='dpkg -i /tmp/*.deb || dpkg -i /tmp/*.deb; dpkg --configure -a && test -z "$(dpkg --audit)"'
REF=$W/ref; cp -a "$ROOTFS" "$REF"
capture() { # phase debs -> delta tarball of what dpkg wrote
  touch "$W/mark-$1"; sleep 1
  cp "$2"/*.deb "$REF/tmp/"
  chroot "$REF" sh -c "$INSTALL" >/dev/null 2>&1 || { echo "fleet: installing the $1 packages in a reference root failed" >&2; exit 1; }
  rm -f "$REF"/tmp/*.deb
  # dpkg keeps the packages' mtimes: what it wrote is what changed status.
  (cd "$REF" && find . -cnewer "$W/mark-$1" ! -type d ! -type c ! -path './tmp/*' -print0 | tar --null -T - -cf "$W/delta-$1.tar")
}
capture month6 "$DEBS6"; capture year2 "$DEBS24"
rm -rf "$REF"

# --- helpers ---------------------------------------------------------------
newfs() { # kind name -> mount point
  local img=$W/$2.img mnt=$W/$2
  truncate -s 40G "$img"; mkdir -p "$mnt"
  case $1 in
    xfs) mkfs.xfs -q -m reflink=1 "$img" ;;
    btrfs) mkfs.btrfs -q "$img" ;;
    ext4) mkfs.ext4 -q -F "$img" ;;
  esac >/dev/null
  mount -o loop "$img" "$mnt"
  sync -f "$mnt"; df -B1 --output=used "$mnt" | tail -n1 > "$mnt.empty"
  echo "$mnt"
}
# Bytes the strategy added to its filesystem (an empty one's own use aside).
used() { sync -f "$1"; echo $(( $(df -B1 --output=used "$1" | tail -n1) - $(cat "$1.empty") )); }
now() { date +%s.%N; }
own() { head -c "$2" /dev/urandom > "$1"; }
declare -A R
record() { R[$1,$2]=$3; }
own_size() { [ "$1" = month6 ] && echo "${OWN6}M" || echo "${OWN24}M"; }
mb() { awk -v b="$1" -v n="$N" 'BEGIN {printf "%.0f", b/n/1048576}'; }

# Applies phase $2 to the root $1 of bot number $3: the first bot (every
# bot, in the dpkg workload) runs dpkg.
drift() {
  local root=$1 phase=$2 i=$3 debs k
  [ "$phase" = month6 ] && debs=$DEBS6 || debs=$DEBS24
  if [ "$i" = 1 ] || [ "$WORKLOAD" = dpkg ]; then
    cp "$debs"/*.deb "$root/tmp/"
    if chroot "$root" sh -c "$INSTALL" >/dev/null 2>&1; then APT_OK=yes; else APT_OK=no; fi
    rm -f "$root"/tmp/*.deb
  else
    tar -xpf "$W/delta-$phase.tar" -C "$root"
  fi
  mkdir -p "$root/root/own"
  own "$root/root/own/$phase.bin" "$(own_size "$phase")"
  if [ "$SMALL" -gt 0 ]; then
    mkdir -p "$root/root/own/$phase"
    for k in $(seq "$SMALL"); do own "$root/root/own/$phase/f$k" $(( (RANDOM % 8 + 1) * 1024 )); done
  fi
}

# --- strategies ------------------------------------------------------------
run_rsync() { # name fs dedupe(none|script|batched)
  local name=$1 m t0 t1 base
  m=$(newfs "$2" "$name")
  t0=$(now); for i in $(seq "$N"); do rsync -aHAX "$ROOTFS/" "$m/bot$i/"; done; t1=$(now)
  record "$name" prov "$(ms_per "$t0" "$t1" "$N")"
  dedupe_pass() { local s; s=$(now)
    case $1 in
      none) return 0 ;;
      script) (cd "$m" && rmlint -T df -g -o sh:rmlint.sh -c sh:handler=clone bot* >/dev/null 2>&1 && sh ./rmlint.sh -d -q >/dev/null 2>&1; rm -f rmlint.sh rmlint.json) ;;
      batched) (cd "$m" && rmlint -T df -g -o json:"$W/rmlint.json" bot* >/dev/null 2>&1; python3 "$DEDUPE" "$W/rmlint.json" >/dev/null; rm -f "$W/rmlint.json") ;;
    esac
    record "$name" dedupe_s "$(awk -v a="$s" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}')"; }
  dedupe_pass "$3"; record "$name" day1 "$(used "$m")"
  for phase in month6 year2; do
    for i in $(seq "$N"); do drift "$m/bot$i" "$phase" "$i"; done
    dedupe_pass "$3"; record "$name" "$phase" "$(used "$m")"
  done
  record "$name" apt "$APT_OK"
}

run_btrfs() {
  local name=btrfs-snapshot m t0 t1
  m=$(newfs btrfs "$name")
  btrfs -q subvolume create "$m/golden"; rsync -aHAX "$ROOTFS/" "$m/golden/"
  t0=$(now); for i in $(seq "$N"); do btrfs -q subvolume snapshot "$m/golden" "$m/bot$i"; done; t1=$(now)
  record "$name" prov "$(ms_per "$t0" "$t1" "$N")"
  record "$name" day1 "$(used "$m")"
  for phase in month6 year2; do
    for i in $(seq "$N"); do drift "$m/bot$i" "$phase" "$i"; done
    record "$name" "$phase" "$(used "$m")"
  done
  record "$name" apt "$APT_OK"
}

run_overlay() {
  local name=overlay-upper m t0 t1
  m=$(newfs ext4 "$name")
  rsync -aHAX "$ROOTFS/" "$m/base/"
  t0=$(now)
  for i in $(seq "$N"); do
    mkdir -p "$m/u$i/upper" "$m/u$i/work" "$m/bot$i"
    mount -t overlay overlay -o "lowerdir=$m/base,upperdir=$m/u$i/upper,workdir=$m/u$i/work" "$m/bot$i"
  done; t1=$(now)
  record "$name" prov "$(ms_per "$t0" "$t1" "$N")"
  record "$name" day1 "$(used "$m")"
  for phase in month6 year2; do
    for i in $(seq "$N"); do drift "$m/bot$i" "$phase" "$i"; done
    record "$name" "$phase" "$(used "$m")"
  done
  record "$name" apt "$APT_OK"
}

run_selective() {
  local name=selective-sync m t0 t1 d
  m=$(newfs ext4 "$name")
  rsync -aHAX "$ROOTFS/" "$m/image/"
  t0=$(now)
  for i in $(seq "$N"); do mkdir -p "$m/data$i"; for d in home root var etc; do rsync -aHAX "$ROOTFS/$d/" "$m/data$i/$d/"; done; done
  t1=$(now)
  record "$name" prov "$(ms_per "$t0" "$t1" "$N")"
  record "$name" day1 "$(used "$m")"
  # The bot's view: the image with its own /home /root /var /etc, /usr read-only.
  local v=$W/selective-view; mkdir -p "$v"
  mount --bind "$m/image" "$v"; mount -o remount,bind,ro "$v"
  for d in home root var etc; do mount --bind "$m/data1/$d" "$v/$d"; done
  mount -t tmpfs tmpfs "$v/tmp"
  for phase in month6 year2; do
    drift "$v" "$phase" 1 || true
    record "$name" apt "$APT_OK"
    for i in $(seq 2 "$N"); do
      # Only what lives under the synced directories can persist.
      tar -xpf "$W/delta-$phase.tar" -C "$m/data$i" --wildcards './home/*' './root/*' './var/*' './etc/*' --strip-components=1 2>/dev/null || true
      mkdir -p "$m/data$i/root/own"; own "$m/data$i/root/own/$phase.bin" "$(own_size "$phase")"
    done
    record "$name" "$phase" "$(used "$m")"
  done
  umount "$v/tmp"; for d in home root var etc; do umount "$v/$d"; done; umount "$v"
}

run_botyard() { # name driver fs
  local name=$1 m t0 t1 s
  m=$(newfs "$3" "$name")
  export BOTYARD_HOME=$m/store
  "$B" init -q; "$B" image import -q debian:bookworm --dir "$ROOTFS"
  "$B" bot create -q warm --image debian:bookworm --driver "$2"; "$B" bot rm -q warm   # builds the shared layer
  t0=$(now); for i in $(seq "$N"); do "$B" bot create -q "bot$i" --image debian:bookworm --driver "$2"; done; t1=$(now)
  record "$name" prov "$(ms_per "$t0" "$t1" "$N")"
  record "$name" day1 "$(used "$m")"
  for phase in month6 year2; do
    for i in $(seq "$N"); do
      [ "$2" = overlay ] && "$B" bot mount -q "bot$i" --dev
      drift "$BOTYARD_HOME/bots/bot$i/root" "$phase" "$i"
      [ "$2" = overlay ] && "$B" bot unmount -q "bot$i"
    done
    s=$(now); "$B" bot commit -q --all; record "$name" commit_s "$(awk -v a="$s" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}')"
    "$B" gc -q
    record "$name" "$phase" "$(used "$m")"
    # Where the bytes go: objects, trees, layers, the uppers, and the rest
    # (refs, caches, fs metadata). Overlay only: du counts a copy bot's
    # reflinked extents once per bot, so it cannot split those.
    if [ "$2" = overlay ]; then record "$name" "split-$phase" "$(split_of "$m/store")"; fi
  done
  record "$name" apt "$APT_OK"
  "$B" fsck -q
  # The same fleet without its history (the month-6 states): what it holds now.
  "$B" gc -q --keep-commits 1 >/dev/null
  record "$name" now "$(used "$m")"
  if [ "$2" = overlay ]; then record "$name" split-now "$(split_of "$m/store")"; fi
  # The physical minimum of this fleet, from the bots' own roots.
  local roots=()
  for i in $(seq "$N"); do
    [ "$2" = overlay ] && "$B" bot mount -q "bot$i"
    roots+=("$BOTYARD_HOME/bots/bot$i/root")
  done
  record "$name" minimum "$(python3 bench/minimum.py "${roots[@]}")"
  # The same with the image's own root: the store keeps the image (for new
  # bots and rebase), also the files of it that every bot has replaced.
  record "$name" minimum_image "$(python3 bench/minimum.py "$ROOTFS" "${roots[@]}")"
  if [ "$2" = overlay ]; then for i in $(seq "$N"); do "$B" bot unmount -q "bot$i"; done; fi
  unset BOTYARD_HOME
}

for s in $STRATEGIES; do
  case $s in
    rsync) run_rsync rsync ext4 none ;;
    rsync+rmlint) run_rsync rsync+rmlint xfs script ;;
    rsync+dedupe) run_rsync rsync+dedupe xfs batched ;;
    btrfs-snapshot) run_btrfs ;;
    overlay-upper) run_overlay ;;
    selective-sync) run_selective ;;
    botyard-overlay) run_botyard botyard-overlay overlay xfs ;;
    botyard-overlay-ext4) run_botyard botyard-overlay-ext4 overlay ext4 ;;
    botyard-copy) run_botyard botyard-copy copy xfs ;;
    botyard-copy-btrfs) run_botyard botyard-copy-btrfs copy btrfs ;;
    *) echo "fleet: unknown strategy $s (one of: $ALL)" >&2; exit 2 ;;
  esac
  # Its figures are recorded: its filesystem goes now. A loop image keeps
  # the blocks its filesystem ever wrote, and the ten together need more
  # free disk (about 40 GB) than many machines have.
  cleanup; rm -f "$W"/*.img
done

base=$(du -sb "$ROOTFS" | cut -f1)
d6=$(tar -tvf "$W/delta-month6.tar" | awk '{s+=$3} END {print s}')
d24=$(tar -tvf "$W/delta-year2.tar" | awk '{s+=$3} END {print s}')
jget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ratio() { awk -v a="$1" -v b="$2" "BEGIN {printf \"%.${3:-1}f\", a/b}"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }
# The dedupe pass botyard's commit is compared with: the fair one when it ran.
fair=rsync+dedupe; [ -n "${R[$fair,dedupe_s]:-}" ] || fair=rsync+rmlint

{
  echo "## Fleet drift benchmark (workload: $WORKLOAD)"
  echo
  echo -n "$N bots per strategy, Debian bookworm minbase ($((base / 1048576)) MiB); month 6: $(ls "$DEBS6"/*.deb | wc -l) security-update .debs ($((d6 / 1048576)) MiB written) + $OWN6 MiB own; year 2: $(ls "$DEBS24"/*.deb | wc -l) .debs ($((d24 / 1048576)) MiB written) + $OWN24 MiB more own"
  [ "$SMALL" -gt 0 ] && echo -n " + $SMALL small files (1-8 KiB) own per phase"
  if [ "$WORKLOAD" = dpkg ]; then echo -n "; every bot runs dpkg itself."; else echo -n "; the first bot runs dpkg, the others receive the files it wrote."; fi
  echo " MiB per bot = bytes the strategy added to its filesystem (statvfs, an empty filesystem's own use subtracted) / N, the base image included."
  echo
  echo "| strategy | fs | provision ms/bot | day 1 | month 6 | year 2 | year 2 vs minimum | apt works | commit or dedupe pass at year 2 |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  declare -A FS=([rsync]=ext4 [rsync+rmlint]=xfs [rsync+dedupe]=xfs [btrfs-snapshot]=btrfs [overlay-upper]=ext4 [selective-sync]=ext4 [botyard-overlay]=xfs [botyard-overlay-ext4]=ext4 [botyard-copy]=xfs [botyard-copy-btrfs]=btrfs)
  # The minimum every row is read against: the first botyard fleet's.
  minimum=
  for n in $STRATEGIES; do [ -z "$minimum" ] && [ -n "${R[$n,minimum]:-}" ] && minimum=$(jget "${R[$n,minimum]}" blocks); done
  for n in $STRATEGIES; do
    f=${FS[$n]}
    pass=${R[$n,commit_s]:-${R[$n,dedupe_s]:--}}; [ "$pass" = - ] || pass="$pass s"
    vs=-; [ -n "$minimum" ] && vs="$(ratio "${R[$n,year2]}" "$minimum" 2)×"
    echo "| $n | $f | ${R[$n,prov]} | $(mb "${R[$n,day1]}") | $(mb "${R[$n,month6]}") | $(mb "${R[$n,year2]}") | $vs | ${R[$n,apt]} | $pass |"
  done
  echo
  echo "Where botyard overlay's bytes go, for the whole fleet (MiB): objects, the tree database, EROFS layers (the image's and the mounted bots'), the uppers, and the rest (refs, caches, filesystem metadata). The physical minimum is measured from the same fleet's roots at year 2 (bench/minimum.py): one copy of each distinct file content as a file of its own in 4 KiB blocks; \"own\" is the part found in one bot only (its own files, its dpkg logs and backups); overhead = year 2 - minimum. Year 2 keeps each bot's month-6 state in its history (gc keeps all commits unless told); \"history let go\" is after \`gc --keep-commits 1\`, only what the bots hold now."
  echo
  echo "| strategy | phase | objects | trees | layers | uppers | rest | total |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for n in $STRATEGIES; do
    [ -n "${R[$n,split-year2]:-}" ] || continue
    for phase in month6 year2 now; do
      read -r o t l u <<<"${R[$n,split-$phase]}"
      label=$phase; [ "$phase" = now ] && label="year2, history let go"
      echo "| $n | $label | $(mib "$o") | $(mib "$t") | $(mib "$l") | $(mib "$u") | $(mib $(( ${R[$n,$phase]} - o - t - l - u ))) | $(mib "${R[$n,$phase]}") |"
    done
  done
  echo
  echo "| strategy | minimum (files, 4 KiB blocks) | its bytes alone | own to one bot, per bot | year 2 | vs minimum | overhead per bot | history let go | vs minimum | overhead per bot | minimum with the image's own files | year 2 vs it |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for n in $STRATEGIES; do
    [ -n "${R[$n,minimum]:-}" ] || continue
    mb_=$(jget "${R[$n,minimum]}" blocks); ap=$(jget "${R[$n,minimum]}" apparent); un=$(jget "${R[$n,minimum]}" unique)
    echo "| $n | $(mib "$mb_") | $(mib "$ap") | $(awk -v b="$un" -v n="$N" 'BEGIN {printf "%.2f", b/n/1048576}') | $(mib "${R[$n,year2]}") | $(ratio "${R[$n,year2]}" "$mb_" 3)× | $(awk -v a="${R[$n,year2]}" -v b="$mb_" -v n="$N" 'BEGIN {printf "%.2f", (a-b)/n/1048576}') | $(mib "${R[$n,now]}") | $(ratio "${R[$n,now]}" "$mb_" 3)× | $(awk -v a="${R[$n,now]}" -v b="$mb_" -v n="$N" 'BEGIN {printf "%.2f", (a-b)/n/1048576}') | $(mib "$(jget "${R[$n,minimum_image]}" blocks)") | $(ratio "${R[$n,year2]}" "$(jget "${R[$n,minimum_image]}" blocks)" 3)× |"
  done
  echo
  [ -n "$minimum" ] && echo -n "Physical minimum at year 2: $(mb "$minimum") MiB/bot."
  [ -n "${R[btrfs-snapshot,year2]:-}" ] && [ -n "${R[botyard-overlay,year2]:-}" ] && echo -n " btrfs snapshots / botyard-overlay: $(ratio "${R[btrfs-snapshot,year2]}" "${R[botyard-overlay,year2]}")×."
  [ -n "${R[botyard-copy-btrfs,year2]:-}" ] && [ -n "${R[btrfs-snapshot,year2]:-}" ] && echo -n " botyard-copy-btrfs (the user-namespace choice) is $(ratio "${R[btrfs-snapshot,year2]}" "${R[botyard-copy-btrfs,year2]}")× smaller than btrfs snapshots."
  [ -n "${R[$fair,dedupe_s]:-}" ] && [ -n "${R[botyard-overlay,commit_s]:-}" ] && echo -n " Committing the fleet at year 2 (botyard-overlay) is $(ratio "${R[$fair,dedupe_s]}" "${R[botyard-overlay,commit_s]}")× faster than the $fair pass."
  [ -n "${R[rsync+rmlint,dedupe_s]:-}" ] && [ -n "${R[rsync+dedupe,dedupe_s]:-}" ] && echo -n " The batched pass takes $(ratio "${R[rsync+rmlint,dedupe_s]}" "${R[rsync+dedupe,dedupe_s]}")× less time than rmlint's script."
  echo
} | tee "$OUT"
