// FastScan packing, LUT quantization, kernels (AVX2 against the scalar reference) and TopK.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fastscan.h"
#include "core/topk.h"

namespace scann {
namespace {

std::vector<int> TestMs() {
  std::vector<int> ms;
  for (int m = 1; m <= 64; m++) ms.push_back(m);
  for (int m : {192, 392, 1000, 8000}) ms.push_back(m);
  return ms;
}

std::vector<uint8_t> RandomCodes(std::mt19937& rng, size_t count) {
  std::vector<uint8_t> codes(count);
  for (auto& c : codes) c = static_cast<uint8_t>(rng() & 0x0F);
  return codes;
}

std::vector<uint8_t> RandomBytes(std::mt19937& rng, size_t count) {
  std::vector<uint8_t> bytes(count);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

std::vector<float> RandomLuts(std::mt19937& rng, int nluts, int m) {
  std::uniform_real_distribution<float> value(-3.0f, 5.0f), spread(0.01f, 2.0f);
  std::vector<float> luts(size_t(nluts) * m * 16);
  // Per-subspace spreads differ so that both scale limits (255 per entry, 65535 per sum)
  // are exercised across m.
  for (size_t s = 0; s < luts.size() / 16; s++) {
    const float k = spread(rng);
    for (int c = 0; c < 16; c++) luts[s * 16 + c] = k * value(rng);
  }
  return luts;
}

// Score of one slot computed from its unpacked codes and the documented qlut layout.
uint32_t NaiveScore(const uint8_t* qlut, const uint8_t* codes, int m) {
  uint32_t sum = 0;
  for (int s = 0; s < m; s++) sum += qlut[size_t(s / 2) * kFastScanUnit + (s % 2) * 16 + codes[s]];
  return sum;
}

bool HaveAvx2() { return DetectIsa() == Isa::kAvx2; }

#define SKIP_WITHOUT_AVX2() \
  if (!HaveAvx2()) GTEST_SKIP() << "CPU lacks AVX2+FMA; only the scalar kernels run"

TEST(FastScanLayout, Sizes) {
  EXPECT_EQ(FastScanPairs(1), 1);
  EXPECT_EQ(FastScanPairs(2), 1);
  EXPECT_EQ(FastScanPairs(3), 2);
  EXPECT_EQ(FastScanCodeBytes(50), 25u * 32u);
  EXPECT_EQ(FastScanCodeBytes(8000), 4000u * 32u);
}

TEST(FastScanLayout, PackGetRoundTrip) {
  std::mt19937 rng(1);
  for (int m : TestMs()) {
    for (int n : {0, 1, 17, 31, 32}) {
      const auto codes = RandomCodes(rng, size_t(n) * m);
      std::vector<uint8_t> block(FastScanCodeBytes(m), 0xAA);
      FastScanPackBlock(codes.data(), n, m, block.data());
      std::vector<uint8_t> got(m);
      for (int slot = 0; slot < kFastScanBlock; slot++) {
        FastScanGetSlot(block.data(), 0, FastScanPairs(m), m, slot, got.data());
        for (int s = 0; s < m; s++)
          ASSERT_EQ(got[s], slot < n ? codes[size_t(slot) * m + s] : 0)
              << "m=" << m << " n=" << n << " slot=" << slot << " s=" << s;
      }
      // The padding subspace of odd m holds code 0 in every slot.
      if (m % 2) {
        for (int j = 16; j < 32; j++) ASSERT_EQ(block[(m / 2) * kFastScanUnit + j], 0);
      }
    }
  }
}

// Writing one slot pair range by pair range (as when a block spans pages) matches packing,
// and leaves every other slot and every other unit untouched.
TEST(FastScanLayout, SetSlotPartialRanges) {
  std::mt19937 rng(2);
  for (int m : TestMs()) {
    const int pairs = FastScanPairs(m);
    const auto rows = RandomCodes(rng, size_t(kFastScanBlock) * m);
    std::vector<uint8_t> expect(FastScanCodeBytes(m));
    FastScanPackBlock(rows.data(), kFastScanBlock, m, expect.data());

    std::vector<uint8_t> block(FastScanCodeBytes(m), 0);
    for (int slot = 0; slot < kFastScanBlock; slot++) {
      const int cut1 = int(rng() % (pairs + 1));
      const int cut2 = cut1 + int(rng() % (pairs - cut1 + 1));
      const int cuts[] = {0, cut1, cut2, pairs};
      for (int r = 0; r < 3; r++) {
        const std::vector<uint8_t> before = block;
        const int begin = cuts[r], count = cuts[r + 1] - cuts[r];
        FastScanSetSlot(block.data() + size_t(begin) * kFastScanUnit, begin, count, m, slot,
                        rows.data() + size_t(slot) * m);
        // Only this slot's nibbles inside [begin, begin + count) may have changed.
        for (size_t byte = 0; byte < block.size(); byte++) {
          const int pair = int(byte / kFastScanUnit), j = int(byte % 16);
          uint8_t mask = 0;
          if (pair >= begin && pair < begin + count && j == slot % 16)
            mask = slot < 16 ? 0x0F : 0xF0;
          ASSERT_EQ(before[byte] & ~mask, block[byte] & ~mask) << "m=" << m << " byte=" << byte;
        }
      }
      // Partial reads agree with the source row.
      std::vector<uint8_t> got(m, 0xFF);
      const int begin = int(rng() % pairs);
      const int count = 1 + int(rng() % (pairs - begin));
      FastScanGetSlot(block.data() + size_t(begin) * kFastScanUnit, begin, count, m, slot,
                      got.data());
      for (int s = 0; s < m; s++) {
        const bool inside = s >= 2 * begin && s < 2 * (begin + count);
        ASSERT_EQ(got[s], inside ? rows[size_t(slot) * m + s] : 0xFF) << "m=" << m << " s=" << s;
      }
    }
    ASSERT_EQ(block, expect) << "m=" << m;
  }
}

TEST(FastScanScalar, MatchesNaiveScores) {
  std::mt19937 rng(3);
  for (int m : TestMs()) {
    const int nblocks = 3;
    const size_t stride = FastScanCodeBytes(m) + 48;
    const auto rows = RandomCodes(rng, size_t(nblocks) * kFastScanBlock * m);
    std::vector<uint8_t> blocks(nblocks * stride);
    for (int b = 0; b < nblocks; b++)
      FastScanPackBlock(rows.data() + size_t(b) * kFastScanBlock * m, kFastScanBlock, m,
                        blocks.data() + b * stride);
    auto qlut = RandomBytes(rng, FastScanCodeBytes(m));
    if (m % 2) std::memset(qlut.data() + (m / 2) * kFastScanUnit + 16, 0, 16);
    std::vector<uint16_t> acc(nblocks * kFastScanBlock, 7);
    scalar::FastScanAccumulateBlocks(blocks.data(), nblocks, stride, FastScanPairs(m), qlut.data(),
                                     acc.data());
    for (int i = 0; i < nblocks * kFastScanBlock; i++)
      ASSERT_EQ(acc[i], uint16_t(7 + NaiveScore(qlut.data(), rows.data() + size_t(i) * m, m)))
          << "m=" << m << " i=" << i;
  }
}

// Runs both kernels on the same (possibly misaligned, strided, partial) input and compares.
void ExpectKernelsAgree(const uint8_t* blocks, size_t nblocks, size_t stride, int npairs,
                        const uint8_t* qlut, const std::vector<uint16_t>& init) {
  std::vector<uint16_t> want(init.size() + 1), got(init.size() + 1);
  std::copy(init.begin(), init.end(), want.begin() + 1);
  std::copy(init.begin(), init.end(), got.begin() + 1);
  // acc + 1 is 2-byte but not 32-byte aligned.
  FastScanKernelsFor(Isa::kScalar)
      .accumulate_blocks(blocks, nblocks, stride, npairs, qlut, want.data() + 1);
  FastScanKernelsFor(Isa::kAvx2)
      .accumulate_blocks(blocks, nblocks, stride, npairs, qlut, got.data() + 1);
  ASSERT_EQ(want, got) << "nblocks=" << nblocks << " stride=" << stride << " npairs=" << npairs;
}

TEST(FastScanAvx2, AccumulateMatchesScalar) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(4);
  for (int m : TestMs()) {
    const int pairs = FastScanPairs(m);
    const size_t code_bytes = FastScanCodeBytes(m);
    // Random bytes everywhere (codes, TIDs between blocks, full-range LUT bytes): scores wrap
    // modulo 2^16 for large m, which both kernels must do identically.
    const auto qlut_buf = RandomBytes(rng, code_bytes + 3);
    const uint8_t* qlut = qlut_buf.data() + 3;
    for (size_t stride : {code_bytes, code_bytes + 7, code_bytes + 192}) {
      const auto buf = RandomBytes(rng, 5 * stride + 1);
      const uint8_t* base = buf.data() + 1;
      for (size_t nblocks = 1; nblocks <= 5; nblocks++) {
        const auto init = RandomBytes(rng, nblocks * kFastScanBlock * 2);
        std::vector<uint16_t> acc(nblocks * kFastScanBlock);
        std::memcpy(acc.data(), init.data(), init.size());
        ExpectKernelsAgree(base, nblocks, stride, pairs, qlut, acc);
        if (HasFatalFailure()) return;
      }
    }
    // Partial pair ranges of one block.
    const auto buf = RandomBytes(rng, code_bytes + 1);
    for (int trial = 0; trial < 4; trial++) {
      const int begin = int(rng() % pairs);
      const int count = int(rng() % (pairs - begin + 1));
      const std::vector<uint16_t> acc(kFastScanBlock, uint16_t(rng()));
      ExpectKernelsAgree(buf.data() + 1 + begin * kFastScanUnit, 1, code_bytes, count,
                         qlut + begin * kFastScanUnit, acc);
      if (HasFatalFailure()) return;
    }
  }
}

// The AVX2 LUT scale and quantization give the same scale, bytes and offset as the scalar
// reference,
// including entries that round up to the 255 cap, constant tables and odd m.
TEST(FastScanLut, Avx2QuantizationMatchesScalar) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2";
  std::mt19937 rng(11);
  for (int m : TestMs()) {
    auto luts = RandomLuts(rng, 2, m);
    std::fill(luts.begin() + 16, luts.begin() + 32, 3.25f);  // a constant subspace
    const float scale = FastScanLutScale(luts.data(), 2, m);
    const LutRanges want_ranges = FastScanKernelsFor(Isa::kScalar).lut_ranges(luts.data(), 2, m);
    const LutRanges got_ranges = FastScanKernelsFor(Isa::kAvx2).lut_ranges(luts.data(), 2, m);
    ASSERT_EQ(want_ranges.max_range, got_ranges.max_range) << "m=" << m;
    ASSERT_EQ(want_ranges.max_sum, got_ranges.max_sum) << "m=" << m;
    ASSERT_TRUE(want_ranges.finite && got_ranges.finite) << "m=" << m;
    for (int t = 0; t < 2; t++) {
      const float* lut = luts.data() + size_t(t) * m * 16;
      std::vector<uint8_t> want(FastScanCodeBytes(m), 0xAA), got(FastScanCodeBytes(m), 0x55);
      const double want_offset =
          FastScanKernelsFor(Isa::kScalar).quantize_lut(lut, m, scale, want.data());
      const double got_offset =
          FastScanKernelsFor(Isa::kAvx2).quantize_lut(lut, m, scale, got.data());
      ASSERT_EQ(want_offset, got_offset) << "m=" << m;
      ASSERT_EQ(want, got) << "m=" << m;
    }
  }
}

// Quantized scores stay within the documented bound of the float sums, and the largest
// possible score of every table fits in uint16.
TEST(FastScanLut, QuantizationErrorBound) {
  std::mt19937 rng(5);
  for (int m : TestMs()) {
    const int nluts = 3;
    const auto luts = RandomLuts(rng, nluts, m);
    const float scale = FastScanLutScale(luts.data(), nluts, m);
    ASSERT_TRUE(std::isfinite(scale) && scale > 0) << "m=" << m;
    for (int t = 0; t < nluts; t++) {
      const float* lut = luts.data() + size_t(t) * m * 16;
      std::vector<uint8_t> qlut(FastScanCodeBytes(m));
      const double offset = FastScanQuantizeLut(lut, m, scale, qlut.data());

      // Worst-case codes (largest entry per subspace) must not overflow uint16.
      std::vector<uint8_t> worst(m);
      for (int s = 0; s < m; s++) {
        const uint8_t* sub = qlut.data() + (s / 2) * kFastScanUnit + (s % 2) * 16;
        worst[s] = uint8_t(std::max_element(sub, sub + 16) - sub);
      }
      ASSERT_LE(NaiveScore(qlut.data(), worst.data(), m), 65535u) << "m=" << m;

      // 31 random rows plus the worst-case row, scored by the active kernel.
      auto rows = RandomCodes(rng, size_t(kFastScanBlock) * m);
      std::copy(worst.begin(), worst.end(), rows.begin());
      std::vector<uint8_t> block(FastScanCodeBytes(m));
      FastScanPackBlock(rows.data(), kFastScanBlock, m, block.data());
      std::vector<uint16_t> acc(kFastScanBlock, 0);
      FastScanKernelsActive().accumulate_blocks(block.data(), 1, block.size(), FastScanPairs(m),
                                                qlut.data(), acc.data());
      for (int i = 0; i < kFastScanBlock; i++) {
        const uint8_t* row = rows.data() + size_t(i) * m;
        ASSERT_EQ(acc[i], NaiveScore(qlut.data(), row, m)) << "m=" << m << " overflowed";
        double exact = 0, magnitude = std::fabs(offset);
        for (int s = 0; s < m; s++) {
          exact += lut[s * 16 + row[s]];
          magnitude += std::fabs(lut[s * 16 + row[s]]);
        }
        const double approx = offset + acc[i] / double(scale);
        const double bound = m * (0.5 + 1e-4) / scale + 1e-6 * magnitude;
        ASSERT_LE(std::fabs(approx - exact), bound) << "m=" << m << " table=" << t << " i=" << i;
      }
    }
  }
}

TEST(FastScanLut, ConstantTablesAndPadding) {
  const int m = 5;
  std::vector<float> lut(m * 16, 2.5f);
  const float scale = FastScanLutScale(lut.data(), 1, m);
  ASSERT_TRUE(std::isfinite(scale) && scale > 0);
  std::vector<uint8_t> qlut(FastScanCodeBytes(m), 0xFF);
  EXPECT_DOUBLE_EQ(FastScanQuantizeLut(lut.data(), m, scale, qlut.data()), 12.5);
  for (uint8_t q : qlut) EXPECT_EQ(q, 0);
}

TEST(FastScanLut, EntriesUseFullByteRangeForSmallM) {
  std::mt19937 rng(6);
  const int m = 8;
  const auto luts = RandomLuts(rng, 2, m);
  const float scale = FastScanLutScale(luts.data(), 2, m);
  int top = 0;
  for (int t = 0; t < 2; t++) {
    std::vector<uint8_t> qlut(FastScanCodeBytes(m));
    FastScanQuantizeLut(luts.data() + t * m * 16, m, scale, qlut.data());
    top = std::max(top, int(*std::max_element(qlut.begin(), qlut.end())));
  }
  EXPECT_EQ(top, 255);  // the subspace with the widest range spans the whole byte
}

std::vector<uint32_t> NaiveBelow(const std::vector<uint16_t>& scores, uint16_t threshold) {
  std::vector<uint32_t> idx;
  for (size_t i = 0; i < scores.size(); i++)
    if (scores[i] < threshold) idx.push_back(uint32_t(i));
  return idx;
}

TEST(FastScanSelect, KernelsMatchNaive) {
  std::mt19937 rng(7);
  const bool avx2 = HaveAvx2();
  for (size_t n : {size_t(0), size_t(1), size_t(15), size_t(31), size_t(32), size_t(33), size_t(64),
                   size_t(100), size_t(1000), size_t(4099)}) {
    std::vector<uint16_t> buf(n + 1);
    for (auto& s : buf) s = uint16_t(rng() % 3 == 0 ? rng() : 30000 + rng() % 5000);
    const std::vector<uint16_t> scores(buf.begin() + 1, buf.end());
    for (uint16_t threshold : {uint16_t(0), uint16_t(1), uint16_t(30000), uint16_t(32768),
                               uint16_t(32769), uint16_t(40000), uint16_t(65535)}) {
      const auto want = NaiveBelow(scores, threshold);
      for (Isa isa : {Isa::kScalar, Isa::kAvx2}) {
        if (isa == Isa::kAvx2 && !avx2) continue;
        std::vector<uint32_t> idx(n + 1, 0xDEADBEEF);
        // buf.data() + 1: scores not 32-byte aligned.
        const size_t count =
            FastScanKernelsFor(isa).select_below(buf.data() + 1, n, threshold, idx.data());
        idx.resize(count);
        ASSERT_EQ(idx, want) << IsaName(isa) << " n=" << n << " threshold=" << threshold;
      }
    }
  }
  if (!avx2) GTEST_SKIP() << "CPU lacks AVX2+FMA; only the scalar select ran";
}

// The k smallest by (score, id), sorted, from a stream with many tied scores.
TEST(TopK, KeepsExactlyTheKSmallest) {
  std::mt19937 rng(8);
  for (size_t n : {0, 1, 10, 1000, 20000}) {
    std::vector<TopK::Entry> all(n);
    for (size_t i = 0; i < n; i++) all[i] = {float(rng() % 50) * 0.25f, rng() % 100000};
    auto sorted = all;
    std::sort(sorted.begin(), sorted.end(), [](const TopK::Entry& a, const TopK::Entry& b) {
      return a.score < b.score || (a.score == b.score && a.id < b.id);
    });
    TopK topk;
    for (size_t k : {0, 1, 5, 100, 2000, 5000}) {  // 5000: slack capped below k
      topk.Reset(k);
      for (const auto& e : all) {
        const float before = topk.Threshold();
        topk.Push(e.score, e.id);
        ASSERT_LE(topk.Threshold(), before);  // the threshold never rises
      }
      const size_t kept = std::min(k, n);
      ASSERT_EQ(topk.size(), kept);
      if (k > n) {
        EXPECT_EQ(topk.Threshold(), std::numeric_limits<float>::infinity());
      } else if (k == 0) {
        EXPECT_EQ(topk.Threshold(), -std::numeric_limits<float>::infinity());
      } else {
        EXPECT_GE(topk.Threshold(), sorted[k - 1].score);  // a bound until sorted
      }
      topk.SortAscending();
      ASSERT_EQ(topk.size(), kept);
      if (k > 0 && k <= n) {
        EXPECT_EQ(topk.Threshold(), sorted[k - 1].score);  // exact now
      }
      for (size_t i = 0; i < kept; i++) {
        ASSERT_EQ(topk[i].score, sorted[i].score) << "n=" << n << " k=" << k << " i=" << i;
        ASSERT_EQ(topk[i].id, sorted[i].id) << "n=" << n << " k=" << k << " i=" << i;
      }
    }
  }
}

TEST(TopK, PushAfterSortAndNaN) {
  TopK topk(3);
  for (uint64_t id = 0; id < 5; id++) topk.Push(float(10 - id), id);  // keeps 6, 7, 8
  topk.Push(std::nanf(""), 99);
  topk.SortAscending();
  EXPECT_EQ(topk[0].score, 6.0f);
  topk.Push(1.0f, 50);  // pushing after sorting is allowed
  topk.Push(7.0f, 0);   // ties the worst kept (7, id 3) with a smaller id: enters
  topk.SortAscending();
  ASSERT_EQ(topk.size(), 3u);
  EXPECT_EQ(topk[0].id, 50u);
  EXPECT_EQ(topk[1].id, 4u);
  EXPECT_EQ(topk[2].id, 0u);
  EXPECT_EQ(topk.Threshold(), 7.0f);
}

}  // namespace
}  // namespace scann
