#!/usr/bin/env perl
# Turns spk2utt lines ("spk utt1 utt2 ...") into utt2spk lines ("utt spk").
#
#   utils/spk2utt_to_utt2spk.pl [spk2utt] > utt2spk
#
# Reads the named file or stdin; writes the utterances in input order (pipe
# through LC_ALL=C sort if the speaker ids are not prefixes of the utterance
# ids).  A line with a speaker and no utterances is an error (exit 1).
use strict;
use warnings;

# Bytes, not characters: [ \t] never matches inside a UTF-8 sequence.
if (@ARGV && ($ARGV[0] eq '-h' || $ARGV[0] eq '--help')) {
    print "Usage: utils/spk2utt_to_utt2spk.pl [spk2utt] > utt2spk\n";
    exit 0;
}
die "Usage: utils/spk2utt_to_utt2spk.pl [spk2utt] > utt2spk\n" if @ARGV > 1;

while (my $line = <>) {
    chomp $line;
    my ($spk, @utts) = split(/[ \t]+/, $line =~ s/^[ \t]+//r);
    if (!@utts) {
        print STDERR "spk2utt_to_utt2spk.pl: $ARGV:$.: expected 'speaker-id utterance-id...', got '$line'\n";
        exit 1;
    }
    print "$_ $spk\n" for @utts;
}
