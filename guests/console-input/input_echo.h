/* Keyboard and pointer echo on serial (see input_echo.c). After pic_init(). */
void input_echo_init(int vmmouse);
int input_echo_pending(void);   /* bytes from IRQ 1 / 12 wait for input_echo_poll() */
int input_echo_poll(void);      /* prints them; 1 once Esc was pressed */
extern unsigned input_echo_presses;  /* key presses (make codes) echoed so far */
