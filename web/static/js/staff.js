// Plain staff pages (the 403 page): only the header's sign-out button.
import { wireLogout } from './util.js';

wireLogout();
