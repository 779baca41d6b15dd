/* cpuid: prints what the VMM advertises: the hypervisor bit and signature, and the
 * features a conservative VMM hides (CMPXCHG16B, XSAVE, AVX, PCID, x2APIC, TSC-deadline). */
#include "rt.h"

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int main(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    printf("cpuid: leaf1 ecx=0x%08x edx=0x%08x\n", r[2], r[3]);
    printf("cpuid: hypervisor=%u cx16=%u xsave=%u avx=%u pcid=%u x2apic=%u tscdeadline=%u apicid=%u\n",
           (r[2] >> 31) & 1, (r[2] >> 13) & 1, (r[2] >> 26) & 1, (r[2] >> 28) & 1,
           (r[2] >> 17) & 1, (r[2] >> 21) & 1, (r[2] >> 24) & 1, r[1] >> 24);
    if (r[2] >> 31 & 1) {
        char sig[13];
        cpuid(0x40000000, 0, r);
        memcpy(sig, &r[1], 4);
        memcpy(sig + 4, &r[2], 4);
        memcpy(sig + 8, &r[3], 4);
        sig[12] = 0;
        for (int i = 0; i < 12; i++)
            if (sig[i] < 0x20 || sig[i] > 0x7e) sig[i] = '.';
        printf("cpuid: signature \"%s\" max leaf 0x%x\n", sig, r[0]);
    }
    return 0;
}
