#!/bin/sh
# download_ucf101.sh - fetch and unpack UCF101 and its official splits.
#
#   scripts/download_ucf101.sh [DIR]        (default DIR: data)
#
# Leaves, as UCF distributes them:
#   DIR/UCF-101/<Class>/v_<Class>_gXX_cYY.avi     13,320 videos, 101 classes
#   DIR/ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
# then checks the tree with `vprep --check` when vprep is on PATH (or in
# build/train/). The next step is the clip store (docs/data.md):
#   vprep --root DIR/UCF-101 --splits DIR/ucfTrainTestlist --out DIR/ucf101.h5
#
# Needs curl or wget, unrar (or unar, or 7z) and unzip; ~6.5 GB download,
# ~6.5 GB unpacked. The UCF server's certificate chain is often incomplete,
# hence --no-check-certificate / --insecure. Files already downloaded are
# not fetched again (an interrupted download resumes).
set -eu

DIR=${1:-data}
BASE=https://www.crcv.ucf.edu/data/UCF101
VIDEOS=UCF101.rar
SPLITS=UCF101TrainTestSplits-RecognitionTask.zip

die() { echo "download_ucf101.sh: $*" >&2; exit 1; }

fetch() {
    # $1 = file name under $BASE; resumes a partial file.
    if command -v wget >/dev/null 2>&1; then
        wget --no-check-certificate -c -O "$DIR/$1" "$BASE/$1"
    elif command -v curl >/dev/null 2>&1; then
        curl --insecure -L -C - -o "$DIR/$1" "$BASE/$1"
    else
        die "needs wget or curl"
    fi
}

unpack_rar() {
    if command -v unrar >/dev/null 2>&1; then
        unrar x -o+ "$1" "$2/"
    elif command -v unar >/dev/null 2>&1; then
        unar -f -o "$2" "$1"
    elif command -v 7z >/dev/null 2>&1; then
        7z x -y -o"$2" "$1"
    else
        die "needs unrar (Debian: apt-get install unrar, or unar, or p7zip-full)"
    fi
}

command -v unzip >/dev/null 2>&1 || die "needs unzip (apt-get install unzip)"
mkdir -p "$DIR"

if [ ! -d "$DIR/ucfTrainTestlist" ]; then
    [ -s "$DIR/$SPLITS" ] || fetch "$SPLITS"
    unzip -o "$DIR/$SPLITS" -d "$DIR"
fi
[ -f "$DIR/ucfTrainTestlist/classInd.txt" ] || die "$DIR/$SPLITS did not unpack to ucfTrainTestlist/"

if [ ! -d "$DIR/UCF-101" ]; then
    fetch "$VIDEOS"
    unpack_rar "$DIR/$VIDEOS" "$DIR"
fi
[ -d "$DIR/UCF-101/ApplyEyeMakeup" ] || die "$DIR/$VIDEOS did not unpack to UCF-101/"

n=$(find "$DIR/UCF-101" -name '*.avi' | wc -l)
echo "download_ucf101.sh: $n videos in $DIR/UCF-101 (13320 expected)"
[ "$n" -eq 13320 ] || echo "download_ucf101.sh: warning: expected 13320 videos" >&2

VPREP=$(command -v vprep || true)
[ -n "$VPREP" ] || { [ -x build/train/vprep ] && VPREP=build/train/vprep; } || true
if [ -n "$VPREP" ]; then
    "$VPREP" --check --root "$DIR/UCF-101" --splits "$DIR/ucfTrainTestlist"
else
    echo "download_ucf101.sh: build vprep and run:"
    echo "  vprep --check --root $DIR/UCF-101 --splits $DIR/ucfTrainTestlist"
fi
echo "next: vprep --root $DIR/UCF-101 --splits $DIR/ucfTrainTestlist --out $DIR/ucf101.h5"
