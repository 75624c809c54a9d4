#!/usr/bin/env bash
# Rebuilds the test corpus: small real files made with Pillow, sox and
# espeak-ng (Debian), plus malformed ones. Run from this directory:
#   bash make_corpus.sh
set -euo pipefail
PY=${PY:-../../.venv/bin/python}
$PY - <<'PYEOF'
import io, struct, zlib
from PIL import Image, ImageDraw

def picture(mode="RGB", size=(48, 32)):
    image = Image.new(mode, size, "white" if mode != "CMYK" else (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle([4, 4, 20, 20], fill="red" if mode == "RGB" else None)
    return image

base = picture()
base.save("image.png")
base.save("image.jpg", quality=90)
base.save("image_progressive.jpg", quality=90, progressive=True)
base.convert("CMYK").save("image_cmyk.jpg")
base.save("image.webp")
base.save("image.bmp")
base.save("image.tiff")
frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
frames[0].save("image.gif", save_all=True, append_images=frames[1:])
# EXIF orientation 6 (rotate 90 CW to display): stored 48x32, shown 32x48.
exif = Image.Exif(); exif[0x0112] = 6
base.save("image_exif_rotated.jpg", exif=exif.tobytes())
png = open("image.png", "rb").read()
open("image_truncated.png", "wb").write(png[: len(png) // 2])
open("image_wrong_magic.png", "wb").write(b"GIF00" + png[5:])
# A valid PNG header (its CRC recomputed) claiming 100,000 x 100,000 pixels:
# a decompression bomb. The pixel data is the small image's.
ihdr = struct.pack(">II", 100_000, 100_000) + png[24:29]
header = png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
open("image_bomb_header.png", "wb").write(header + png[33:])
# The same for 8,000 x 8,000 (64 M pixels): under Pillow's own bomb
# error, so only seedserve's max_pixels stands in the way.
ihdr = struct.pack(">II", 8_000, 8_000) + png[24:29]
header = png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
open("image_bomb_8k.png", "wb").write(header + png[33:])
PYEOF
espeak-ng -w speech.wav "seedserve hears you"            # 22.05 kHz 16-bit mono
sox speech.wav -b 8 -e unsigned-integer audio_8bit.wav
sox speech.wav -b 24 audio_24bit.wav
sox speech.wav -b 32 -e signed-integer audio_32bit.wav
sox speech.wav -b 32 -e floating-point audio_float.wav
sox speech.wav -c 2 audio_stereo.wav
sox speech.wav audio.flac
sox speech.wav audio.ogg
sox speech.wav audio.mp3 2>/dev/null || echo "sox has no MP3 writer here; audio.mp3 skipped"
head -c 2000 speech.wav > audio_truncated.wav
printf 'RIFX' | cat - <(tail -c +5 speech.wav) > audio_wrong_magic.wav
