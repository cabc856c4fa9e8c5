#!/usr/bin/env bash
# Checks a Kaldi-style data directory the way Kaldi's own validate_data_dir.sh
# does with --no-feats (feats.scp is never needed or checked here).
#
#   utils/validate_data_dir.sh [--no-feats] [--no-text] [--no-spk-sort] DATA_DIR
#
# Required: utt2spk, spk2utt, wav.scp and (unless --no-text) text.  Checked
# when present: text (also with --no-text), utt2dur, segments.
#  * every file: UTF-8, "\n" line ends (also on the last line), no CR, no empty
#    lines, "KEY VALUE" lines with a non-empty value and no tab or leading
#    whitespace in the key; keys unique and in LC_ALL=C sort order;
#  * utt2spk: "utt spk" lines; also sorted by speaker (make speaker ids
#    prefixes of utterance ids), unless --no-spk-sort;
#  * spk2utt: exactly what utils/utt2spk_to_spk2utt.pl makes from utt2spk;
#  * text, wav.scp (utterance-indexed unless segments exists), utt2dur,
#    segments: the same utterance ids as utt2spk;
#  * text: a non-empty transcript, no control characters, no Unicode
#    whitespace other than space and tab, no <s>, </s> or #0 words;
#  * wav.scp: no "~/..." paths (audio paths are not checked for existence);
#  * utt2dur: a positive duration; segments: "utt reco start end" with
#    0 <= start < end, and its recording ids the same as wav.scp's keys.
# Prints "Successfully validated data-directory DIR" and exits 0, or prints
# the first problem (file, line, key) on stderr and exits 1.
set -euo pipefail
export LC_ALL=C

me=$(basename "$0")
usage="Usage: $me [--no-feats] [--no-text] [--no-spk-sort] DATA_DIR
  --no-feats     accepted for Kaldi compatibility (feats.scp is never checked)
  --no-text      do not require a text file (it is still checked if present)
  --no-spk-sort  do not require utt2spk to be sorted by speaker as well
e.g.: $me data/train"

no_text=false
no_spk_sort=false
data=
while (($# > 0)); do
  case "$1" in
    --no-feats) ;;
    --no-text) no_text=true ;;
    --no-spk-sort) no_spk_sort=true ;;
    -h | --help) echo "$usage"; exit 0 ;;
    -*) echo "$me: ERROR: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *)
      if [[ -n "$data" ]]; then
        echo "$me: ERROR: expected one DATA_DIR, got '$data' and '$1'" >&2
        echo "$usage" >&2
        exit 1
      fi
      data=$1
      ;;
  esac
  shift
done
if [[ -z "$data" ]]; then
  echo "$usage" >&2
  exit 1
fi

# The checks, in Perl.  Strings stay bytes (no "use utf8", no unicode_strings)
# so that "lt" compares like LC_ALL=C sort and [ \t] never matches inside a
# UTF-8 sequence.
read -r -d '' checks <<'PERL' || true
use strict;
use warnings;
use Encode qw(decode FB_CROAK);

my ($me, $dir, $no_text, $no_spk_sort) = @ARGV;

sub fail { print STDERR "$me: ERROR: ", @_, "\n"; exit 1; }

# Splits a table line into its key and value.
sub key_value { return $_[0] =~ /^([^ ]*) *(.*)$/s; }

# Checks what every table needs (a value too, unless $allow_empty) in a
# first pass over FILE, then calls $each->($line_number, $key, $value) for
# each line in a second one, so that format and order errors come first.
sub read_table {
    my ($file, $each, $allow_empty) = @_;
    open(my $fh, '<:raw', $file) or fail("cannot read $file: $!");
    my ($n, $prev, %line_of) = (0);
    while (my $line = <$fh>) {
        $n++;
        my $where = "$file:$n";
        chomp($line) or fail("$where: no newline at the end of the last line; add one");
        fail("$where: carriage return (CRLF line end); convert with dos2unix or sed -i 's/\\r\$//' $file")
            if $line =~ /\r/;
        $line !~ /[\x80-\xFF]/ or eval { decode('UTF-8', my $copy = $line, FB_CROAK); 1 }
            or fail("$where: not valid UTF-8; convert the file to UTF-8 (e.g. iconv -f GBK -t UTF-8)");
        fail("$where: empty line; remove it") if $line eq '';
        fail("$where: line starts with whitespace; remove it") if $line =~ /^[ \t]/;
        my ($key, $value) = key_value($line);
        if ($key =~ /\t/) {
            (my $shown = $key) =~ s/\t/<TAB>/g;
            fail("$where: tab in key '$shown'; separate the key from the value with a space");
        }
        fail("$where: key '$key' has no value") if !$allow_empty && $value =~ /^[ \t]*$/;
        if (exists $line_of{$key}) {
            fail("$where: duplicate key '$key' (also on line $line_of{$key}); keys must be unique");
        }
        if (defined $prev && $key lt $prev) {
            fail("$where: key '$key' comes after '$prev': not in LC_ALL=C sort order; "
                 . "sort it with: LC_ALL=C sort -o $file $file");
        }
        $line_of{$key} = $n;
        $prev = $key;
    }
    close($fh);
    fail("$file is empty") if $n == 0;
    open($fh, '<:raw', $file) or fail("cannot read $file: $!");
    while (my $line = <$fh>) {
        chomp($line);
        $each->($., key_value($line));
    }
    close($fh);
}

# Compares the keys of a file, one at a time, with the utterance list.
sub key_matcher {
    my ($file, $what, $expected, $expected_from) = @_;
    my $i = 0;
    my $next = sub {
        my ($n, $key) = @_;
        if ($i > $#$expected || $key lt $expected->[$i]) {
            fail("$file:$n: $what '$key' is not in $expected_from");
        }
        if ($key gt $expected->[$i]) {
            fail("$file:$n: $what '$expected->[$i]' of $expected_from is missing from $file");
        }
        $i++;
    };
    my $done = sub {
        return if $i > $#$expected;
        my $more = $#$expected - $i;
        fail("$file: $what '$expected->[$i]' of $expected_from"
             . ($more ? " (and $more more)" : '') . " is missing from $file");
    };
    return ($next, $done);
}

my (@utts, %spk_utts);
my $prev_spk;
read_table("$dir/utt2spk", sub {
    my ($n, $utt, $spk) = @_;
    fail("$dir/utt2spk:$n: expected 'utterance-id speaker-id', got '$utt $spk'") if $spk =~ /[ \t]/;
    if ($no_spk_sort ne 'true' && defined $prev_spk && $spk lt $prev_spk) {
        fail("$dir/utt2spk:$n: utterance '$utt' of speaker '$spk' comes after speaker '$prev_spk': "
             . "utt2spk is not sorted by speaker as well as by utterance; make the speaker ids "
             . "prefixes of the utterance ids (or pass --no-spk-sort)");
    }
    $prev_spk = $spk;
    push @utts, $utt;
    push @{$spk_utts{$spk}}, $utt;
});

my @speakers = sort keys %spk_utts;
my $s = 0;
read_table("$dir/spk2utt", sub {
    my ($n, $spk, $value) = @_;
    my $found = join(' ', $spk, split(/[ \t]+/, $value));
    my $expected = $s <= $#speakers ? join(' ', $speakers[$s], @{$spk_utts{$speakers[$s]}}) : '(nothing)';
    if ($found ne $expected) {
        fail("$dir/spk2utt:$n: does not match utt2spk: expected '$expected', found '$found'; "
             . "regenerate it: utils/utt2spk_to_spk2utt.pl $dir/utt2spk > $dir/spk2utt");
    }
    $s++;
});
if ($s <= $#speakers) {
    fail("$dir/spk2utt: speaker '$speakers[$s]' of utt2spk is missing; regenerate it: "
         . "utils/utt2spk_to_spk2utt.pl $dir/utt2spk > $dir/spk2utt");
}

if (-e "$dir/text") {
    my ($next, $done) = key_matcher("$dir/text", 'utterance', \@utts, 'utt2spk');
    read_table("$dir/text", sub {
        my ($n, $utt, $words) = @_;
        my $where = "$dir/text:$n";
        fail("$where: empty transcript for utterance '$utt'; remove the utterance or fill in its text")
            if $words =~ /^[ \t]*$/;
        my $chars = decode('UTF-8', $words);
        fail("$where: utterance '$utt' has a control character (U+"
             . sprintf('%04X', ord($1)) . ") in its text") if $chars =~ /([^\t\P{Cc}])/;
        fail("$where: utterance '$utt' has Unicode whitespace U+" . sprintf('%04X', ord($1))
             . " in its text; use a plain space") if $chars =~ /([^ \t\P{Space}])/;
        for my $word (split(/[ \t]+/, $words)) {
            fail("$where: utterance '$utt' has the reserved symbol '$word' in its text")
                if $word eq '<s>' || $word eq '</s>' || $word eq '#0';
        }
        $next->($n, $utt);
    }, 1);
    $done->();
} elsif ($no_text ne 'true') {
    fail("no such file $dir/text (if this is by design, pass --no-text)");
}

fail("no such file $dir/wav.scp") unless -e "$dir/wav.scp";
if (-e "$dir/segments") {
    my ($next, $done) = key_matcher("$dir/segments", 'utterance', \@utts, 'utt2spk');
    my %recordings;
    read_table("$dir/segments", sub {
        my ($n, $utt, $value) = @_;
        my @f = split(/[ \t]+/, $value);
        my $num = qr/^(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
        if (@f != 3 || $f[1] !~ $num || $f[2] !~ $num || $f[2] <= $f[1]) {
            fail("$dir/segments:$n: expected 'utterance-id recording-id start end' with "
                 . "0 <= start < end, got '$utt $value'");
        }
        $recordings{$f[0]} = 1;
        $next->($n, $utt);
    });
    $done->();
    my ($next_reco, $done_reco) = key_matcher("$dir/wav.scp", 'recording', [sort keys %recordings], 'segments');
    read_table("$dir/wav.scp", sub {
        my ($n, $reco, $value) = @_;
        fail("$dir/wav.scp:$n: '~' in the path of '$reco'; use a full path") if $value =~ /^~/;
        $next_reco->($n, $reco);
    });
    $done_reco->();
} else {
    my ($next, $done) = key_matcher("$dir/wav.scp", 'utterance', \@utts, 'utt2spk');
    read_table("$dir/wav.scp", sub {
        my ($n, $utt, $value) = @_;
        fail("$dir/wav.scp:$n: '~' in the path of '$utt'; use a full path") if $value =~ /^~/;
        $next->($n, $utt);
    });
    $done->();
}

if (-e "$dir/utt2dur") {
    my ($next, $done) = key_matcher("$dir/utt2dur", 'utterance', \@utts, 'utt2spk');
    read_table("$dir/utt2dur", sub {
        my ($n, $utt, $dur) = @_;
        if ($dur !~ /^(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/ || $dur <= 0) {
            fail("$dir/utt2dur:$n: duration of '$utt' must be one positive number of seconds, got '$dur'");
        }
        $next->($n, $utt);
    });
    $done->();
}
PERL

if [[ ! -d "$data" ]]; then
  echo "$me: ERROR: no such directory $data" >&2
  exit 1
fi
for f in utt2spk spk2utt; do
  if [[ ! -f "$data/$f" ]]; then
    echo "$me: ERROR: no such file $data/$f" >&2
    exit 1
  fi
done

perl -e "$checks" "$me" "${data%/}" "$no_text" "$no_spk_sort" || exit 1
echo "$me: Successfully validated data-directory $data"
