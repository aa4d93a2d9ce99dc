/* bcryptprimitives.dll for Wine 8, which has none: Rust's standard library (1.78 and later) imports
 * bcryptprimitives.dll!ProcessPrng for its random numbers, so every Rust-built wheel (cryptography, pydantic-core,
 * orjson) fails to load under Wine 8 with "DLL load failed". ProcessPrng is forwarded to RtlGenRandom
 * (advapi32!SystemFunction036), which Wine implements over the host's random source.
 *
 * Test scaffolding only: built by scripts/windows-env.sh with gcc-mingw-w64-x86-64 and placed next to the embeddable
 * python.exe of the Wine test environment. Never shipped to a Windows desk (Windows 10 and later have the real one).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
    /* RtlGenRandom takes a ULONG length; ProcessPrng a SIZE_T, so fill large requests in pieces. */
    while (size > 0) {
        ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        size -= chunk;
    }
    return TRUE;  /* like Windows' ProcessPrng, which never fails */
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
