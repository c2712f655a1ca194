// What each PluggyClient method of pluggy-sdk declares it resolves to, one name per answer: the
// runner generates a JSON Schema of each from the SDK's own declarations and checks every answer.
import type {
  Account,
  AccountStatement,
  Category,
  Connector,
  Consent,
  CreditCardBills,
  CursorPageResponse,
  IdentityResponse,
  Investment,
  InvestmentTransaction,
  Item,
  Loan,
  PageResponse,
  Transaction,
  Webhook,
  WebhookEventPayload,
} from 'pluggy-sdk';
import type { ValidationResult } from 'pluggy-sdk/dist/types/validation';

export type ConnectorAnswer = Connector;
export type ConnectorPage = PageResponse<Connector>;
export type ValidationAnswer = ValidationResult;
export type ItemAnswer = Item;
export type AccountAnswer = Account;
export type AccountPage = PageResponse<Account>;
export type AccountStatementPage = PageResponse<AccountStatement>;
export type TransactionAnswer = Transaction;
export type TransactionPage = PageResponse<Transaction>;
export type TransactionCursorPage = CursorPageResponse<Transaction>;
export type TransactionList = Transaction[];
export type InvestmentAnswer = Investment;
export type InvestmentPage = PageResponse<Investment>;
export type InvestmentTransactionPage = PageResponse<InvestmentTransaction>;
export type InvestmentTransactionList = InvestmentTransaction[];
export type LoanAnswer = Loan;
export type LoanPage = PageResponse<Loan>;
export type ConsentAnswer = Consent;
export type ConsentPage = PageResponse<Consent>;
export type IdentityAnswer = IdentityResponse;
export type BillAnswer = CreditCardBills;
export type BillPage = PageResponse<CreditCardBills>;
export type CategoryAnswer = Category;
export type CategoryPage = PageResponse<Category>;
export type WebhookAnswer = Webhook;
export type WebhookPage = PageResponse<Webhook>;
export type ConnectTokenAnswer = { accessToken: string };
// What Pluggy posts to a webhook's url (the receiver parses it with JSON.parse: no Dates).
export type WebhookDelivery = WebhookEventPayload;
