#!/usr/bin/env perl
# Turns utt2spk lines ("utt spk") into spk2utt lines ("spk utt1 utt2 ...").
#
#   utils/utt2spk_to_spk2utt.pl [utt2spk] > spk2utt
#
# Reads the named file or stdin.  Speakers come out in LC_ALL=C sort order,
# each speaker's utterances in input order.  A line without exactly two
# fields, or an utterance listed twice, is an error (exit 1).
use strict;
use warnings;

# Bytes, not characters: "lt"/sort compare like LC_ALL=C sort and [ \t]
# never matches inside a UTF-8 sequence.
if (@ARGV && ($ARGV[0] eq '-h' || $ARGV[0] eq '--help')) {
    print "Usage: utils/utt2spk_to_spk2utt.pl [utt2spk] > spk2utt\n";
    exit 0;
}
die "Usage: utils/utt2spk_to_spk2utt.pl [utt2spk] > spk2utt\n" if @ARGV > 1;

my (%utts_of, %line_of);
while (my $line = <>) {
    chomp $line;
    my @fields = split(/[ \t]+/, $line =~ s/^[ \t]+//r);
    if (@fields != 2) {
        print STDERR "utt2spk_to_spk2utt.pl: $ARGV:$.: expected 'utterance-id speaker-id', got '$line'\n";
        exit 1;
    }
    my ($utt, $spk) = @fields;
    if (exists $line_of{$utt}) {
        print STDERR "utt2spk_to_spk2utt.pl: $ARGV:$.: utterance '$utt' already on line $line_of{$utt}\n";
        exit 1;
    }
    $line_of{$utt} = $.;
    push @{$utts_of{$spk}}, $utt;
}
for my $spk (sort keys %utts_of) {
    print join(' ', $spk, @{$utts_of{$spk}}), "\n";
}
