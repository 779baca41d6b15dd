/* A bzImage around KERNEL (the probe linked at 1 MiB, flat): one boot sector plus
 * setup_sects = 1 real-mode sector holding the setup header, then the protected-mode
 * kernel. The real-mode code is absent. Boot protocol 2.10 (32-bit entry) or, with
 * KERNEL_64, 2.12 with XLF_KERNEL_64 (a 64-bit entry at 0x200). */
#ifdef KERNEL_64
#define VERSION 0x020C
#define XLOADFLAGS 0x0001
#else
#define VERSION 0x020A
#define XLOADFLAGS 0
#endif
        .section .data
        .org    0x1F1
        .byte   1                       /* setup_sects */
        .word   0                       /* root_flags */
        .long   (kernel_end - kernel) / 16  /* syssize */
        .word   0, 0xFFFF, 0            /* ram_size, vid_mode, root_dev */
        .word   0xAA55                  /* boot_flag */
        .byte   0xEB, header_end - 0x202  /* jump over the header */
        .ascii  "HdrS"
        .word   VERSION
        .long   0                       /* realmode_swtch */
        .word   0x1000, 0               /* start_sys_seg, kernel_version */
        .byte   0                       /* type_of_loader */
        .byte   0x01                    /* loadflags: LOADED_HIGH */
        .word   0                       /* setup_move_size */
        .long   0x100000                /* code32_start */
        .long   0, 0                    /* ramdisk_image, ramdisk_size */
        .long   0                       /* bootsect_kludge */
        .word   0                       /* heap_end_ptr */
        .byte   0, 0                    /* ext_loader_ver, ext_loader_type */
        .long   0                       /* cmd_line_ptr */
        .long   0x37FFFFFF              /* initrd_addr_max */
        .long   0x1000                  /* kernel_alignment */
        .byte   0, 0                    /* relocatable_kernel, min_alignment */
        .word   XLOADFLAGS
        .long   2047                    /* cmdline_size */
        .long   0, 0                    /* hardware_subarch, hardware_subarch_data */
        .long   0, 0                    /* payload_offset, payload_length */
        .quad   0                       /* setup_data */
        .quad   0x100000                /* pref_address */
        .long   0x20000                 /* init_size */
        .long   0                       /* handover_offset */
header_end:
        .org    1024
kernel:
        .incbin KERNEL
kernel_end:
